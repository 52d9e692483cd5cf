"""catalog: the history of packs' list prices

Revision ID: 0019
Revises: 0018
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

import tongka.db

revision = '0019'
down_revision = '0018'
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_table('pack_price_changes',
    sa.Column('id', sa.Integer(), autoincrement=True, nullable=False),
    sa.Column('pack_id', sa.Uuid(), nullable=False),
    sa.Column('currency', sa.String(length=3), nullable=False),
    sa.Column('old_amount', sa.BigInteger(), nullable=True),
    sa.Column('new_amount', sa.BigInteger(), nullable=False),
    sa.Column('at', tongka.db.UTCDateTime(timezone=True), nullable=False),
    sa.Column('changed_by', sa.String(length=32), nullable=False),
    sa.ForeignKeyConstraint(['pack_id'], ['packs.id'], name=op.f('fk_pack_price_changes_pack_id_packs')),
    sa.PrimaryKeyConstraint('id', name=op.f('pk_pack_price_changes'))
    )
    with op.batch_alter_table('pack_price_changes', schema=None) as batch_op:
        batch_op.create_index(batch_op.f('ix_pack_price_changes_pack_id'), ['pack_id'], unique=False)


def downgrade() -> None:
    with op.batch_alter_table('pack_price_changes', schema=None) as batch_op:
        batch_op.drop_index(batch_op.f('ix_pack_price_changes_pack_id'))

    op.drop_table('pack_price_changes')
