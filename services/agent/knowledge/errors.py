"""Errors of knowledge bases and documents (domain ``agent.orchestrall.dev``)."""

from __future__ import annotations

import grpc

from services.kit.errors import AlreadyExists, FailedPrecondition, NotFound, Unavailable


def knowledge_base_not_found(name: str) -> NotFound:
    """No such knowledge base in the caller's tenant."""
    return NotFound("KNOWLEDGE_BASE_NOT_FOUND", f"{name} not found", metadata={"name": name})


def knowledge_base_exists(name: str) -> AlreadyExists:
    """A knowledge base with that ID exists."""
    return AlreadyExists("KNOWLEDGE_BASE_ALREADY_EXISTS", f"{name} already exists", metadata={"name": name})


def knowledge_base_not_empty(name: str) -> FailedPrecondition:
    """The knowledge base has documents and the delete was not forced."""
    return FailedPrecondition(
        "KNOWLEDGE_BASE_NOT_EMPTY",
        f"{name} has documents; delete them first or set force",
        metadata={"name": name},
    )


def embedding_model_changed(name: str, stored: str, current: str) -> FailedPrecondition:
    """The deployment embeds with another model than the knowledge base's chunks were embedded with."""
    return FailedPrecondition(
        "EMBEDDING_MODEL_CHANGED",
        f"{name} is embedded with {stored}, the deployment now with {current}; create a new knowledge base",
        metadata={"name": name, "embedding_model": stored},
    )


def embedding_failed(message: str) -> Unavailable:
    """The embedding endpoint failed."""
    return Unavailable("EMBEDDING_FAILED", message)


def document_not_found(name: str) -> NotFound:
    """No such document in the caller's tenant."""
    return NotFound("DOCUMENT_NOT_FOUND", f"{name} not found", metadata={"name": name})


def document_exists(name: str) -> AlreadyExists:
    """A document with that ID exists in the knowledge base."""
    return AlreadyExists("DOCUMENT_ALREADY_EXISTS", f"{name} already exists", metadata={"name": name})


#: The status code of a failed document's ``error``, by its reason.
INGESTION_FAILURE_CODES = {
    "DOCUMENT_UNREADABLE": grpc.StatusCode.INVALID_ARGUMENT,
    "DOCUMENT_EMPTY": grpc.StatusCode.INVALID_ARGUMENT,
    "EMBEDDING_FAILED": grpc.StatusCode.UNAVAILABLE,
}
