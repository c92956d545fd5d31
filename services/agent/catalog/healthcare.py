"""Healthcare tools: clinical scores (BMI, eGFR by CKD-EPI 2021) and FHIR resource validation."""

from __future__ import annotations

import math
from typing import Any

from services.agent.tools import Tool, ToolError

#: mg/dL of creatinine per µmol/L (molar mass 113.12 g/mol).
CREATININE_UMOL_PER_MG_DL = 88.42

#: WHO adult BMI classes (WHO Technical Report Series 894, 2000, table 2.1): upper bound, class.
BMI_CLASSES = (
    (18.5, "underweight"),
    (25.0, "normal weight"),
    (30.0, "pre-obesity"),
    (35.0, "obesity class I"),
    (40.0, "obesity class II"),
    (math.inf, "obesity class III"),
)
#: KDIGO 2012 GFR categories (Kidney Int Suppl 2013;3:1-150, table 5): lower bound, category.
GFR_CATEGORIES = ((90, "G1"), (60, "G2"), (45, "G3a"), (30, "G3b"), (15, "G4"), (0, "G5"))


def body_mass_index(weight_kg: float, height_cm: float) -> float:
    """Returns the body mass index, weight over height squared, in kg/m² (unrounded)."""
    return weight_kg / (height_cm / 100) ** 2


def egfr_ckd_epi_2021(creatinine_mg_dl: float, age_years: float, female: bool) -> float:
    """Estimated GFR in mL/min/1.73 m² by the race-free CKD-EPI 2021 creatinine equation.

    ``142 * min(Scr/k, 1)^a * max(Scr/k, 1)^-1.200 * 0.9938^age * (1.012 if female)``
    with ``k`` 0.7 (female) or 0.9 (male) and ``a`` -0.241 (female) or -0.302 (male).
    Source: L. A. Inker et al., "New Creatinine- and Cystatin C-Based Equations to
    Estimate GFR without Race", N Engl J Med 2021;385:1737-1749, table S10 (adults).

    Returns:
        The unrounded estimate.
    """
    kappa, alpha = (0.7, -0.241) if female else (0.9, -0.302)
    ratio = creatinine_mg_dl / kappa
    value = 142 * min(ratio, 1) ** alpha * max(ratio, 1) ** -1.200 * 0.9938**age_years
    return value * 1.012 if female else value


def clinical_scores(args: dict[str, Any]) -> dict[str, Any]:
    """BMI with its WHO class and, given serum creatinine, eGFR (CKD-EPI 2021) with its KDIGO category.

    Returns:
        ``bmi`` (to 0.1 kg/m²) and ``bmi_class`` when weight and height are given;
        ``egfr`` (whole mL/min/1.73 m², as laboratories report it) and
        ``gfr_category`` when creatinine, age and sex are given.

    Raises:
        ToolError: Neither score's inputs are given, or an adult's age (18+) is not.
    """
    result: dict[str, Any] = {}
    weight, height = args.get("weight_kg"), args.get("height_cm")
    if weight is not None and height is not None:
        bmi = body_mass_index(float(weight), float(height))
        result["bmi"] = round(bmi, 1)
        result["bmi_class"] = next(name for bound, name in BMI_CLASSES if bmi < bound)
    creatinine = args.get("serum_creatinine_mg_dl")
    if creatinine is None and args.get("serum_creatinine_umol_l") is not None:
        creatinine = float(args["serum_creatinine_umol_l"]) / CREATININE_UMOL_PER_MG_DL
    if creatinine is not None:
        age, sex = args.get("age_years"), args.get("sex")
        if age is None or sex is None:
            raise ToolError("eGFR needs age_years and sex as well as creatinine")
        if float(age) < 18:
            raise ToolError("CKD-EPI 2021 is for adults (18 years and older)")
        egfr = egfr_ckd_epi_2021(float(creatinine), float(age), sex == "female")
        result["egfr"] = round(egfr)
        result["gfr_category"] = next(name for bound, name in GFR_CATEGORIES if egfr >= bound)
    if not result:
        raise ToolError("give weight_kg and height_cm (BMI), or serum creatinine, age_years and sex (eGFR)")
    return result


def fhir_validate(args: dict[str, Any]) -> dict[str, Any]:
    """Validates a FHIR resource (JSON) against the FHIR R5 or R4B structure definitions.

    Uses the ``fhir.resources`` models (generated from the HL7 FHIR specification's
    StructureDefinitions): element types and formats (dates, codes, ids),
    cardinalities, required elements and unknown elements. Codes are not checked
    against their value sets (that takes a terminology server).

    Returns:
        ``valid``, ``resource_type``, ``fhir_version`` and ``issues``: each with the
        element ``location`` (a dotted path) and ``message``; at most 50.

    Raises:
        ToolError: No ``resourceType``, or one that FHIR does not define.
    """
    resource = args.get("resource")
    version = args.get("fhir_version", "R5")
    if not isinstance(resource, dict) or not isinstance(resource.get("resourceType"), str):
        raise ToolError("resource must be a JSON object with a resourceType")
    kind = resource["resourceType"]
    # Imported on first use: the agent service starts without loading FHIR's models.
    from fhir.resources import get_fhir_model_class
    from fhir.resources.R4B import get_fhir_model_class as get_r4b_model_class
    from pydantic import ValidationError

    try:
        model = (get_fhir_model_class if version == "R5" else get_r4b_model_class)(kind)
    except (KeyError, ValueError):
        raise ToolError(f"{kind!r} is not a FHIR {version} resource type") from None
    issues = []
    try:
        model.model_validate(resource)
    except ValidationError as error:
        for problem in error.errors()[:50]:
            location = ".".join(str(part) for part in problem["loc"] if part != "__root__")
            issues.append({"location": location, "message": problem["msg"][:300]})
    return {"valid": not issues, "resource_type": kind, "fhir_version": version, "issues": issues}


TOOLS: tuple[Tool, ...] = (
    Tool(
        id="clinical_scores",
        description=(
            "Body mass index with its WHO class, and estimated GFR by the CKD-EPI 2021 equation with its "
            "KDIGO category, from weight, height, age, sex and serum creatinine."
        ),
        parameters={
            "type": "object",
            "properties": {
                "weight_kg": {"type": "number", "exclusiveMinimum": 0, "maximum": 700},
                "height_cm": {"type": "number", "minimum": 30, "maximum": 300},
                "age_years": {"type": "number", "minimum": 0, "maximum": 130},
                "sex": {"type": "string", "enum": ["female", "male"]},
                "serum_creatinine_mg_dl": {"type": "number", "exclusiveMinimum": 0, "maximum": 40},
            },
            # All five, so that a grammar-constrained model fills them all in; the function
            # itself also computes either score alone (and takes creatinine in µmol/L).
            "required": ["weight_kg", "height_cm", "age_years", "sex", "serum_creatinine_mg_dl"],
        },
        function=clinical_scores,
    ),
    Tool(
        id="fhir_validate",
        description=(
            "Validates a FHIR resource (JSON) against the FHIR R5 or R4B specification; lists its issues."
        ),
        parameters={
            "type": "object",
            "properties": {
                "resource": {
                    "type": "object",
                    "properties": {"resourceType": {"type": "string"}},
                    "required": ["resourceType"],
                },
                "fhir_version": {"type": "string", "enum": ["R5", "R4B"]},
            },
            "required": ["resource"],
        },
        function=fhir_validate,
    ),
)
