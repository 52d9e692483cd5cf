"""buckets found by line and expiry in one index (the charging batch's line query)

Revision ID: 0009
Revises: 0008
"""

from __future__ import annotations

from alembic import op

revision = '0009'
down_revision = '0008'
branch_labels = None
depends_on = None


def upgrade() -> None:
    with op.batch_alter_table('buckets', schema=None) as batch_op:
        batch_op.create_index('ix_buckets_line_id_expires_at', ['line_id', 'expires_at'], unique=False)
        batch_op.drop_index('ix_buckets_line_id')


def downgrade() -> None:
    with op.batch_alter_table('buckets', schema=None) as batch_op:
        batch_op.create_index('ix_buckets_line_id', ['line_id'], unique=False)
        batch_op.drop_index('ix_buckets_line_id_expires_at')
