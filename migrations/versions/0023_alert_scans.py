"""alerts: where the scan of buckets and overage got to

Revision ID: 0023
Revises: 0022
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

import tongka.db


revision = '0023'
down_revision = '0022'
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_table(
        'alert_scans',
        sa.Column('name', sa.String(length=32), nullable=False),
        sa.Column('transfer_id', sa.BigInteger(), nullable=False),
        sa.Column('previous_transfer_id', sa.BigInteger(), nullable=False),
        sa.Column('scanned_at', tongka.db.UTCDateTime(timezone=True), nullable=False),
        sa.Column('previous_scanned_at', tongka.db.UTCDateTime(timezone=True), nullable=False),
        sa.PrimaryKeyConstraint('name', name=op.f('pk_alert_scans')),
    )


def downgrade() -> None:
    op.drop_table('alert_scans')
