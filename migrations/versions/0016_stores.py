"""stores: the store finder's stores, their districts, opening hours and places

Revision ID: 0016
Revises: 0015
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

import tongka.db

revision = '0016'
down_revision = '0015'
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_table('stores',
    sa.Column('code', sa.String(length=40), nullable=False),
    sa.Column('names', sa.JSON(), nullable=False),
    sa.Column('district', sa.String(length=40), nullable=False),
    sa.Column('addresses', sa.JSON(), nullable=False),
    sa.Column('hours', sa.JSON(), nullable=False),
    sa.Column('nearest_kind', sa.String(length=16), nullable=False),
    sa.Column('nearest_names', sa.JSON(), nullable=False),
    sa.Column('latitude_e6', sa.Integer(), nullable=False),
    sa.Column('longitude_e6', sa.Integer(), nullable=False),
    sa.Column('active', sa.Boolean(), nullable=False),
    sa.Column('id', sa.Uuid(), nullable=False),
    sa.Column('created_at', tongka.db.UTCDateTime(timezone=True), nullable=False),
    sa.CheckConstraint("nearest_kind IN ('mtr', 'crossing')", name=op.f('ck_stores_nearest_kind')),
    sa.CheckConstraint('latitude_e6 BETWEEN -90000000 AND 90000000 AND longitude_e6 BETWEEN -180000000 AND 180000000', name=op.f('ck_stores_coordinates')),
    sa.PrimaryKeyConstraint('id', name=op.f('pk_stores')),
    sa.UniqueConstraint('code', name=op.f('uq_stores_code'))
    )


def downgrade() -> None:
    op.drop_table('stores')
