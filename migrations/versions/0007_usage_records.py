"""usage records imported from partner networks

Revision ID: 0007
Revises: 0006
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

import tongka.db

revision = '0007'
down_revision = '0006'
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_table('usage_records',
    sa.Column('record_id', sa.String(length=64), nullable=False),
    sa.Column('line_id', sa.Uuid(), nullable=False),
    sa.Column('plmn', sa.String(length=7), nullable=False),
    sa.Column('zone', sa.String(length=16), nullable=False),
    sa.Column('started_at', tongka.db.UTCDateTime(timezone=True), nullable=False),
    sa.Column('ended_at', tongka.db.UTCDateTime(timezone=True), nullable=False),
    sa.Column('bytes_up', sa.BigInteger(), nullable=False),
    sa.Column('bytes_down', sa.BigInteger(), nullable=False),
    sa.Column('from_buckets', sa.BigInteger(), nullable=False),
    sa.Column('overage_bytes', sa.BigInteger(), nullable=False),
    sa.Column('overage_amount', sa.BigInteger(), nullable=False),
    sa.Column('overage_currency', sa.String(length=3), nullable=True),
    sa.Column('owed_bytes', sa.BigInteger(), nullable=False),
    sa.Column('import_id', sa.Uuid(), nullable=False),
    sa.Column('line_number', sa.Integer(), nullable=False),
    sa.Column('imported_at', tongka.db.UTCDateTime(timezone=True), nullable=False),
    sa.CheckConstraint("zone IN ('mainland', 'hk')", name=op.f('ck_usage_records_zone')),
    sa.CheckConstraint('ended_at >= started_at', name=op.f('ck_usage_records_ends_after_start')),
    sa.CheckConstraint(
        'bytes_up >= 0 AND bytes_down >= 0 AND from_buckets >= 0 AND overage_bytes >= 0'
        ' AND overage_amount >= 0 AND owed_bytes >= 0',
        name=op.f('ck_usage_records_not_negative'),
    ),
    sa.CheckConstraint(
        'from_buckets + overage_bytes + owed_bytes = bytes_up + bytes_down', name=op.f('ck_usage_records_all_charged')
    ),
    sa.CheckConstraint(
        '(overage_amount = 0) OR (overage_currency IS NOT NULL)', name=op.f('ck_usage_records_overage_currency')
    ),
    sa.ForeignKeyConstraint(['line_id'], ['lines.id'], name=op.f('fk_usage_records_line_id_lines')),
    sa.ForeignKeyConstraint(['plmn'], ['networks.plmn'], name=op.f('fk_usage_records_plmn_networks')),
    sa.PrimaryKeyConstraint('record_id', name=op.f('pk_usage_records'))
    )
    with op.batch_alter_table('usage_records', schema=None) as batch_op:
        batch_op.create_index(batch_op.f('ix_usage_records_line_id'), ['line_id'], unique=False)


def downgrade() -> None:
    with op.batch_alter_table('usage_records', schema=None) as batch_op:
        batch_op.drop_index(batch_op.f('ix_usage_records_line_id'))
    op.drop_table('usage_records')
