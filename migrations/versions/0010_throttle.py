"""throttle counters (log-in, SMS codes, coupons); a bind challenge may be for no line (a decoy)

Revision ID: 0010
Revises: 0009
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

import tongka.db

revision = '0010'
down_revision = '0009'
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_table('throttle_counters',
    sa.Column('scope', sa.String(length=32), nullable=False),
    sa.Column('key', sa.String(length=64), nullable=False),
    sa.Column('window_start', tongka.db.UTCDateTime(timezone=True), nullable=False),
    sa.Column('hits', sa.Integer(), nullable=False),
    sa.Column('last_hit_at', tongka.db.UTCDateTime(timezone=True), nullable=False),
    sa.PrimaryKeyConstraint('scope', 'key', name=op.f('pk_throttle_counters'))
    )
    with op.batch_alter_table('throttle_counters', schema=None) as batch_op:
        batch_op.create_index(batch_op.f('ix_throttle_counters_last_hit_at'), ['last_hit_at'], unique=False)

    with op.batch_alter_table('bind_challenges', schema=None) as batch_op:
        batch_op.alter_column('line_id', existing_type=sa.Uuid(), nullable=True)


def downgrade() -> None:
    op.execute("DELETE FROM bind_challenges WHERE line_id IS NULL")
    with op.batch_alter_table('bind_challenges', schema=None) as batch_op:
        batch_op.alter_column('line_id', existing_type=sa.Uuid(), nullable=False)

    with op.batch_alter_table('throttle_counters', schema=None) as batch_op:
        batch_op.drop_index(batch_op.f('ix_throttle_counters_last_hit_at'))
    op.drop_table('throttle_counters')
