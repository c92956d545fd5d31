"""knowledge: knowledge bases, their documents, the documents' contents and chunks with embeddings

Revision ID: 0011
Revises: 0010
Create Date: 2026-12-16 10:00:00.000000
"""

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

from services.kit.migrate import disable_tenant_isolation, enable_tenant_isolation

revision: str = "0011"
down_revision: str | None = "0010"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None

# New tables with a tenant_id column.
TENANT_TABLES = ("knowledge_bases", "knowledge_documents", "knowledge_document_contents", "knowledge_chunks")


def upgrade() -> None:
    op.create_table(
        "knowledge_bases",
        sa.Column("tenant_id", sa.String(length=63), nullable=False),
        sa.Column("id", sa.String(length=63), nullable=False),
        sa.Column("display_name", sa.String(length=200), nullable=False),
        sa.Column("description", sa.String(length=2000), nullable=False),
        sa.Column("embedding_model", sa.String(length=200), nullable=False),
        sa.Column("chunk_count", sa.BigInteger(), nullable=False),
        sa.Column("generation", sa.BigInteger(), nullable=False),
        sa.Column("request_id", sa.String(length=100), nullable=True),
        sa.Column("create_time", sa.DateTime(timezone=True), nullable=False),
        sa.Column("update_time", sa.DateTime(timezone=True), nullable=False),
        sa.PrimaryKeyConstraint("tenant_id", "id", name=op.f("pk_knowledge_bases")),
        sa.UniqueConstraint("tenant_id", "request_id", name=op.f("uq_knowledge_bases_tenant_id_request_id")),
    )
    op.create_table(
        "knowledge_documents",
        sa.Column("tenant_id", sa.String(length=63), nullable=False),
        sa.Column("knowledge_base_id", sa.String(length=63), nullable=False),
        sa.Column("id", sa.String(length=63), nullable=False),
        sa.Column("display_name", sa.String(length=200), nullable=False),
        sa.Column("mime_type", sa.String(length=100), nullable=False),
        sa.Column("size_bytes", sa.BigInteger(), nullable=False),
        sa.Column("content_sha256", sa.String(length=64), nullable=False),
        sa.Column("content_generation", sa.Integer(), nullable=False),
        sa.Column("state", sa.String(length=20), nullable=False),
        sa.Column("chunks_done", sa.Integer(), nullable=False),
        sa.Column("chunks_total", sa.Integer(), nullable=False),
        sa.Column("error_reason", sa.String(length=100), nullable=False),
        sa.Column("error_message", sa.String(length=2000), nullable=False),
        sa.Column("lease_owner", sa.String(length=200), nullable=True),
        sa.Column("lease_expire_time", sa.DateTime(timezone=True), nullable=True),
        sa.Column("request_id", sa.String(length=100), nullable=True),
        sa.Column("create_time", sa.DateTime(timezone=True), nullable=False),
        sa.Column("update_time", sa.DateTime(timezone=True), nullable=False),
        sa.ForeignKeyConstraint(
            ["tenant_id", "knowledge_base_id"],
            ["knowledge_bases.tenant_id", "knowledge_bases.id"],
            name=op.f("fk_knowledge_documents_tenant_id_knowledge_bases"),
            ondelete="CASCADE",
        ),
        sa.PrimaryKeyConstraint("tenant_id", "knowledge_base_id", "id", name=op.f("pk_knowledge_documents")),
        sa.UniqueConstraint(
            "tenant_id",
            "knowledge_base_id",
            "request_id",
            name=op.f("uq_knowledge_documents_tenant_id_knowledge_base_id_request_id"),
        ),
    )
    op.create_index(
        "ix_knowledge_documents_state", "knowledge_documents", ["state", "lease_expire_time"], unique=False
    )
    op.create_table(
        "knowledge_document_contents",
        sa.Column("tenant_id", sa.String(length=63), nullable=False),
        sa.Column("knowledge_base_id", sa.String(length=63), nullable=False),
        sa.Column("document_id", sa.String(length=63), nullable=False),
        sa.Column("content", sa.LargeBinary(), nullable=False),
        sa.ForeignKeyConstraint(
            ["tenant_id", "knowledge_base_id", "document_id"],
            [
                "knowledge_documents.tenant_id",
                "knowledge_documents.knowledge_base_id",
                "knowledge_documents.id",
            ],
            name=op.f("fk_knowledge_document_contents_tenant_id_knowledge_documents"),
            ondelete="CASCADE",
        ),
        sa.PrimaryKeyConstraint(
            "tenant_id", "knowledge_base_id", "document_id", name=op.f("pk_knowledge_document_contents")
        ),
    )
    op.create_table(
        "knowledge_chunks",
        sa.Column("tenant_id", sa.String(length=63), nullable=False),
        sa.Column("knowledge_base_id", sa.String(length=63), nullable=False),
        sa.Column("document_id", sa.String(length=63), nullable=False),
        sa.Column("position", sa.Integer(), nullable=False),
        sa.Column("section", sa.String(length=1000), nullable=False),
        sa.Column("text", sa.Text(), nullable=False),
        sa.Column("embedding", sa.LargeBinary(), nullable=False),
        sa.ForeignKeyConstraint(
            ["tenant_id", "knowledge_base_id", "document_id"],
            [
                "knowledge_documents.tenant_id",
                "knowledge_documents.knowledge_base_id",
                "knowledge_documents.id",
            ],
            name=op.f("fk_knowledge_chunks_tenant_id_knowledge_documents"),
            ondelete="CASCADE",
        ),
        sa.PrimaryKeyConstraint(
            "tenant_id", "knowledge_base_id", "document_id", "position", name=op.f("pk_knowledge_chunks")
        ),
    )
    enable_tenant_isolation(TENANT_TABLES)


def downgrade() -> None:
    disable_tenant_isolation(TENANT_TABLES)
    op.drop_table("knowledge_chunks")
    op.drop_table("knowledge_document_contents")
    op.drop_index("ix_knowledge_documents_state", table_name="knowledge_documents")
    op.drop_table("knowledge_documents")
    op.drop_table("knowledge_bases")
