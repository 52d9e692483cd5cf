"""rating groups the operator configures (zero-rated or charged); zero-rated usage per day

Revision ID: 0011
Revises: 0010
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

import tongka.db

revision = '0011'
down_revision = '0010'
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_table('rating_groups',
    sa.Column('rating_group', sa.BigInteger(), autoincrement=False, nullable=False),
    sa.Column('name', sa.String(length=64), nullable=False),
    sa.Column('zero_rated', sa.Boolean(), nullable=False),
    sa.Column('updated_at', tongka.db.UTCDateTime(timezone=True), nullable=False),
    sa.Column('created_at', tongka.db.UTCDateTime(timezone=True), nullable=False),
    sa.CheckConstraint('rating_group >= 0 AND rating_group <= 4294967295', name=op.f('ck_rating_groups_uint32')),
    sa.PrimaryKeyConstraint('rating_group', name=op.f('pk_rating_groups'))
    )
    with op.batch_alter_table('usage_days', schema=None) as batch_op:
        batch_op.add_column(sa.Column('zero_rated_bytes', sa.BigInteger(), server_default='0', nullable=False))
        batch_op.create_check_constraint(op.f('ck_usage_days_zero_rated_not_negative'), 'zero_rated_bytes >= 0')


def downgrade() -> None:
    with op.batch_alter_table('usage_days', schema=None) as batch_op:
        batch_op.drop_constraint(op.f('ck_usage_days_zero_rated_not_negative'), type_='check')
        batch_op.drop_column('zero_rated_bytes')
    op.drop_table('rating_groups')
