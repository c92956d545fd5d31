"""The industry tools against the worked examples of the sources their docstrings cite."""

from __future__ import annotations

import math
import sys

import pytest

from services.agent import tools as catalog
from services.agent.catalog import finance, healthcare, logistics, manufacturing, retail, technology
from services.agent.tools import ToolError

# J. C. Hull, Options, Futures, and Other Derivatives, "Value at Risk": USD 10 million in
# Microsoft (daily volatility 2 %), USD 5 million in AT&T (1 %), correlation 0.3.
MICROSOFT = {"value": 10_000_000, "daily_volatility": 0.02}
ATT = {"value": 5_000_000, "daily_volatility": 0.01}


@pytest.mark.parametrize(
    ("positions", "correlations", "hull"),
    [
        ([MICROSOFT], None, 1_471_300),
        ([ATT], None, 367_800),
        ([MICROSOFT, ATT], [[1, 0.3], [0.3, 1]], 1_620_100),
    ],
)
def test_parametric_var_is_hulls_ten_day_99_percent_var(
    positions: list[dict[str, float]], correlations: list[list[float]] | None, hull: int
) -> None:
    args = {"method": "parametric", "confidence": 0.99, "horizon_days": 10, "positions": positions}
    if correlations:
        args["correlations"] = correlations
    assert round(finance.value_at_risk(args)["value_at_risk"], -2) == hull


def test_historical_var_is_the_fifth_worst_of_500_scenarios_at_99_percent() -> None:
    # Hull, historical simulation: with 500 scenarios the one-day 99 % VaR is the fifth-worst loss.
    returns = [-0.05, -0.04, -0.03, -0.02, -0.01] + [0.001] * 495
    result = finance.value_at_risk(
        {"method": "historical", "confidence": 0.99, "portfolio_value": 1_000_000, "returns": returns}
    )
    assert result["value_at_risk"] == 10_000.0 and result["observations"] == 500
    four_days = {"method": "historical", "confidence": 0.99, "portfolio_value": 1e6, "returns": returns}
    assert (
        finance.value_at_risk({**four_days, "horizon_days": 4})["value_at_risk"] == 20_000.0
    )  # sqrt(4) days
    with pytest.raises(ToolError):
        finance.value_at_risk(
            {"method": "historical", "confidence": 0.99, "portfolio_value": 1, "returns": [0.1]}
        )
    with pytest.raises(ToolError):
        finance.value_at_risk(
            {
                "method": "parametric",
                "confidence": 0.99,
                "positions": [MICROSOFT, ATT],
                "correlations": [[1, 2], [2, 1]],
            }
        )


def test_modified_z_scores_flag_the_outlier_only() -> None:
    # Iglewicz and Hoaglin: M = 0.6745 (x - median) / MAD; median 12, MAD 1 here.
    result = finance.transaction_anomalies({"amounts": [10, 12, 11, 13, 12, 11, 500]})
    assert (result["median"], result["mad"]) == (12.0, 1.0)
    assert result["scores"][0] == -1.349 and result["scores"][6] == 329.156
    assert result["anomalies"] == [{"index": 6, "amount": 500.0, "score": 329.156}]
    with pytest.raises(ToolError, match="MAD is 0"):
        finance.transaction_anomalies({"amounts": [5, 5, 5, 9]})


def _rules(**transaction: object) -> list[str]:
    return [
        f["rule"] for f in finance.compliance_check({"customer_verified": True, **transaction})["findings"]
    ]


def test_compliance_rules_follow_their_regulations() -> None:
    assert finance.compliance_rules()  # the rule set loads and every condition parses
    assert _rules(amount=10_000.01, type="cash", country="US") == ["currency-transaction-report"]
    assert _rules(amount=10_000, type="cash", country="US") == []  # 1010.311: "more than $10,000"
    assert _rules(amount=3_000, type="wire", country="DE", originator_name="Ada Lovelace") == ["travel-rule"]
    assert _rules(amount=999, type="wire", country="DE") == []
    assert _rules(amount=1_000, type="wire", currency="EUR", country="DE") == ["wire-originator-information"]
    assert _rules(amount=5, type="card", country="kp") == ["sanctioned-jurisdiction"]
    unverified = finance.compliance_check({"amount": 5, "type": "card", "country": "US"})
    assert not unverified["compliant"] and [f["rule"] for f in unverified["findings"]] == [
        "customer-identification"
    ]
    assert finance.compliance_check(
        {"amount": 5, "type": "card", "country": "US", "customer_verified": True}
    ) == {
        "compliant": True,
        "findings": [],
        "rules_checked": 5,
    }


def test_bmi_and_egfr_ckd_epi_2021() -> None:
    # BMI 70 / 1.75^2 = 22.86, WHO "normal weight". eGFR, Inker et al. 2021 for a man of 60
    # with creatinine 1.0 mg/dL: 142 * (1.0/0.9)^-1.200 * 0.9938^60 = 142 * 0.8812 * 0.6886 = 86.
    assert healthcare.clinical_scores(
        {"weight_kg": 70, "height_cm": 175, "age_years": 60, "sex": "male", "serum_creatinine_mg_dl": 1.0}
    ) == {"bmi": 22.9, "bmi_class": "normal weight", "egfr": 86, "gfr_category": "G2"}
    # A woman of 50 with 0.6 mg/dL: 142 * (0.6/0.7)^-0.241 * 0.9938^50 * 1.012 = 109 (below kappa).
    assert healthcare.clinical_scores({"age_years": 50, "sex": "female", "serum_creatinine_mg_dl": 0.6}) == {
        "egfr": 109,
        "gfr_category": "G1",
    }
    # 1.0 mg/dL is 88.42 µmol/L; a man of 80 with 1.5 mg/dL: 142 * 1.6667^-1.2 * 0.9938^80 = 47, G3a.
    in_si = healthcare.clinical_scores({"age_years": 60, "sex": "male", "serum_creatinine_umol_l": 88.42})
    assert in_si["egfr"] == 86
    assert (
        healthcare.clinical_scores({"age_years": 80, "sex": "male", "serum_creatinine_mg_dl": 1.5})[
            "gfr_category"
        ]
        == "G3a"
    )
    assert healthcare.clinical_scores({"weight_kg": 110, "height_cm": 170})["bmi_class"] == "obesity class II"
    with pytest.raises(ToolError):
        healthcare.clinical_scores({"age_years": 12, "sex": "male", "serum_creatinine_mg_dl": 0.5})


# From the FHIR specification's example Patient (patient-example.json), shortened.
PATIENT = {
    "resourceType": "Patient",
    "id": "example",
    "active": True,
    "name": [{"use": "official", "family": "Chalmers", "given": ["Peter", "James"]}],
    "gender": "male",
    "birthDate": "1974-12-25",
}


@pytest.mark.parametrize("version", ["R5", "R4B"])
def test_fhir_validation(version: str) -> None:
    assert healthcare.fhir_validate({"resource": PATIENT, "fhir_version": version}) == {
        "valid": True,
        "resource_type": "Patient",
        "fhir_version": version,
        "issues": [],
    }
    broken = healthcare.fhir_validate(
        {"resource": {**PATIENT, "birthDate": "1974-13-45", "colour": "blue"}, "fhir_version": version}
    )
    assert not broken["valid"]
    assert sorted(issue["location"] for issue in broken["issues"]) == ["birthDate", "colour"]
    with pytest.raises(ToolError, match="not a FHIR"):
        healthcare.fhir_validate({"resource": {"resourceType": "Spaceship"}, "fhir_version": version})


def test_eoq_and_reorder_point_of_heizer_and_render() -> None:
    plan = retail.reorder_plan({"annual_demand": 1000, "order_cost": 10, "holding_cost_per_unit_year": 0.5})
    assert (plan["eoq"], plan["orders_per_year"], plan["days_between_orders"], plan["total_annual_cost"]) == (
        200.0,
        5.0,
        50.0,
        100.0,
    )
    # d = 15 units a day, sigma 5, lead time 2 days, 90 % service: ROP = 30 + 1.28 * 5 * sqrt(2) = 39.
    safety = retail.reorder_plan(
        {
            "annual_demand": 15 * 250,
            "order_cost": 10,
            "holding_cost_per_unit_year": 0.5,
            "lead_time_days": 2,
            "daily_demand_std": 5,
            "service_level": 0.9,
        }
    )
    assert safety["daily_demand"] == 15.0 and round(safety["reorder_point"]) == 39


def test_rfm_quintiles_and_segments() -> None:
    customers = [
        {"id": str(i), "recency_days": 50 - 10 * i, "frequency": i + 1, "monetary": 100 * (i + 1)}
        for i in range(5)
    ]
    result = retail.rfm_segments({"customers": customers})
    assert [c["rfm"] for c in result["customers"]] == ["111", "222", "333", "444", "555"]
    assert [c["segment"] for c in result["customers"]] == [
        "lost",
        "hibernating",
        "potential loyalists",
        "champions",
        "champions",
    ]
    assert result["segments"] == {"lost": 1, "hibernating": 1, "potential loyalists": 1, "champions": 2}
    with pytest.raises(ToolError):
        retail.rfm_segments({"customers": customers[:4]})


def test_price_elasticity_midpoint_and_log_log() -> None:
    # Mankiw, Principles of Economics ch. 5: from 4 to 6 dollars, 120 to 80 units: elasticity 1.
    assert retail.price_elasticity({"prices": [4, 6], "quantities": [120, 80]}) == {
        "elasticity": -1.0,
        "method": "midpoint",
        "kind": "unit elastic",
    }
    fitted = retail.price_elasticity({"prices": [1, 2, 4, 8], "quantities": [1000, 250, 62.5, 15.625]})
    assert (fitted["elasticity"], fitted["kind"], fitted["r_squared"]) == (-2.0, "elastic", 1.0)
    with pytest.raises(ToolError):
        retail.price_elasticity({"prices": [3, 3, 3], "quantities": [1, 2, 3]})


@pytest.mark.parametrize(
    ("values", "rule", "points"),
    [
        ([0, 0.2, 3.2, 0], "rule_1", [2]),
        ([0, 2.5, 0.5, 2.2], "rule_2", [3]),
        ([-2.5, 0.5, -2.2, 0], "rule_2", [2]),
        ([1.5, 1.2, 0.5, 1.1, 1.3], "rule_3", [4]),
        ([0.5] * 8, "rule_4", [7]),
        ([0.5] * 7 + [-0.5], "rule_4", []),
    ],
)
def test_western_electric_rules(values: list[float], rule: str, points: list[int]) -> None:
    chart = manufacturing.control_chart({"values": values, "center": 0, "sigma": 1})
    assert chart["violations"][rule] == points
    assert chart["in_control"] is not any(chart["violations"].values()) or not points


def test_individuals_chart_sigma_is_the_average_moving_range_over_d2() -> None:
    # NIST e-Handbook 6.3.2.2: moving ranges 2, 1, 2, 1 average 1.5; sigma = 1.5 / 1.128.
    chart = manufacturing.control_chart({"values": [1, 3, 2, 4, 3]})
    assert chart["center"] == 2.6 and chart["sigma"] == round(1.5 / 1.128, 6)
    assert chart["upper_control_limit"] == round(2.6 + 4.5 / 1.128, 6) and chart["in_control"]


def test_weibull_fit_of_the_ball_bearing_data_and_mtbf() -> None:
    # Lieblein and Zelen's 23 ball bearings (millions of revolutions); MLE beta 2.10, eta 81.9 (Lawless).
    bearings = [17.88, 28.92, 33.00, 41.52, 42.12, 45.60, 48.48, 51.84, 51.96, 54.12, 55.56, 67.80]
    bearings += [68.64, 68.64, 68.88, 84.12, 93.12, 98.64, 105.12, 105.84, 127.92, 128.04, 173.40]
    weibull = manufacturing.reliability({"failure_times": bearings})["weibull"]
    assert round(weibull["shape_beta"], 2) == 2.10 and round(weibull["scale_eta"], 1) == 81.9
    assert weibull["failure_mode"] == "wear-out"
    # MTBF = operating time / failures: 10 units for 1,000 h with 2 failures is 5,000 h.
    assert manufacturing.reliability({"operating_hours": 10_000, "failures": 2, "mission_time": 100}) == {
        "mtbf": 5000.0,
        "reliability_at_mission": round(math.exp(-100 / 5000), 4),
    }


def test_geodesic_of_geographiclibs_worked_example() -> None:
    # GeographicLib: Wellington (41.32 S, 174.81 E) to Salamanca (40.96 N, 5.50 W) is
    # 19,959,679.267 m, initial azimuth 161.067669986 degrees.
    result = logistics.route_eta(
        {
            "origin_lat": -41.32,
            "origin_lon": 174.81,
            "destination_lat": 40.96,
            "destination_lon": -5.50,
            "speed_kmh": 800,
            "stop_hours": 2,
        }
    )
    assert result["distance_km"] == 19959.679 and result["initial_bearing_deg"] == 161.07
    assert result["eta_hours"] == round(19959.679267 / 800 + 2, 2)


def test_fleet_utilisation_counts_hours_not_ratios() -> None:
    result = logistics.fleet_utilisation(
        {
            "vehicles": [
                {
                    "id": "t1",
                    "available_hours": 10,
                    "in_service_hours": 9,
                    "capacity_kg": 1000,
                    "load_kg": 800,
                },
                {"id": "t2", "available_hours": 30, "in_service_hours": 15},
            ]
        }
    )
    assert result["fleet_time_utilisation"] == 0.6 and result["underused"] == ["t2"]
    assert result["vehicles"][0] == {"id": "t1", "time_utilisation": 0.9, "load_utilisation": 0.8}
    with pytest.raises(ToolError):
        logistics.fleet_utilisation({"vehicles": [{"available_hours": 1, "in_service_hours": 2}]})


def test_on_time_delivery_rate() -> None:
    result = logistics.on_time_delivery({"delays_minutes": [-5, 0, 10, 30], "tolerance_minutes": 15})
    assert (result["on_time"], result["on_time_rate"], result["late"], result["mean_delay_minutes"]) == (
        3,
        0.75,
        [3],
        30.0,
    )


def test_code_review_runs_ruff_and_bandit_on_the_snippet() -> None:
    snippet = "import os\nimport subprocess\n\nsubprocess.call(input(), shell=True)\n"
    result = technology.code_review({"code": snippet})
    found = {(f["tool"], f["code"], f["line"]) for f in result["findings"]}
    assert ("ruff", "F401", 1) in found  # os imported but unused
    assert ("bandit", "B602", 4) in found  # subprocess with shell=True
    assert next(f for f in result["findings"] if f["code"] == "B602")["severity"] == "high"


def test_a_checker_over_its_memory_cap_fails_instead_of_taking_the_machine() -> None:
    with pytest.raises(ToolError, match="failed"):
        technology._checked(
            [sys.executable, "-c", "x = bytearray(2 * 1024**3); print('allocated')"], "", "/tmp"
        )


def test_burn_rates_of_the_sre_workbook() -> None:
    # Table 5-8: each alert's burn rate spends its share of a 30-day budget in its long window.
    for _, long_window, _, rate, consumed in technology.BURN_RATE_ALERTS:
        assert math.isclose(rate * long_window / technology.SLO_PERIOD_SECONDS, consumed)
    # A 99.9 % SLO with 1.44 % bad requests in the last hour burns at 14.4: the fast page fires.
    samples = [100.0] * 10_000
    samples[-144:] = [900.0] * 144
    result = technology.slo_burn_rate(
        {"latencies_ms": samples, "threshold_ms": 300, "slo": 0.999, "sample_interval_seconds": 0.36}
    )
    fast = result["alerts"][0]
    assert (fast["long_burn_rate"], fast["firing"], fast["complete"]) == (14.4, True, True)
    assert result["bad_fraction"] == 0.0144
    calm = technology.slo_burn_rate({"latencies_ms": [100.0] * 60, "threshold_ms": 300, "slo": 0.999})
    assert not any(alert["firing"] for alert in calm["alerts"]) and calm["budget_remaining"] == 1.0


def test_secret_scan_finds_the_aws_documentation_key_and_not_plain_code() -> None:
    # AKIAIOSFODNN7EXAMPLE is the example access key ID of the AWS documentation.
    result = technology.secret_scan(
        {"text": 'region = "eu-west-1"\naws_access_key_id = "AKIAIOSFODNN7EXAMPLE"\n'}
    )
    assert result["findings"] == [{"line": 2, "type": "AWS Access Key"}] and not result["clean"]
    assert technology.secret_scan({"text": "total = price * quantity\n"})["clean"]


def _schema_keys(schema: object) -> set[str]:
    if isinstance(schema, dict):
        return set(schema) | {k for value in schema.values() for k in _schema_keys(value)}
    if isinstance(schema, list):
        return {k for value in schema for k in _schema_keys(value)}
    return set()


def test_every_industry_tool_is_in_the_catalog_with_a_schema_a_local_model_can_follow() -> None:
    for module in (finance, healthcare, retail, manufacturing, logistics, technology):
        for tool in module.TOOLS:
            assert catalog.CATALOG[tool.name] is tool
            # llama.cpp spells these out as nested repetitions and refuses the grammar (bounds.py).
            assert not _schema_keys(tool.parameters) & {"maxItems", "maxLength", "pattern"}, tool.id
    with pytest.raises(ToolError, match="at most 10000"):
        finance.transaction_anomalies({"amounts": [1.0] * 10_001})


def test_a_secret_scan_stays_in_its_directory() -> None:
    assert technology.secret_scan({"text": "x = 1\n", "file_name": ".."})["clean"]
