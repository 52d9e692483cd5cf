"""scheduled jobs: a row per job with its next run, last run, result and lease

Revision ID: 0013
Revises: 0012
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

import tongka.db

revision = '0013'
down_revision = '0012'
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_table('scheduled_jobs',
    sa.Column('name', sa.String(length=64), nullable=False),
    sa.Column('next_run_at', tongka.db.UTCDateTime(timezone=True), nullable=False),
    sa.Column('lease_owner', sa.String(length=128), nullable=True),
    sa.Column('lease_until', tongka.db.UTCDateTime(timezone=True), nullable=True),
    sa.Column('last_started_at', tongka.db.UTCDateTime(timezone=True), nullable=True),
    sa.Column('last_finished_at', tongka.db.UTCDateTime(timezone=True), nullable=True),
    sa.Column('last_status', sa.String(length=16), nullable=True),
    sa.Column('last_result', sa.String(length=500), nullable=True),
    sa.Column('last_run_by', sa.String(length=128), nullable=True),
    sa.Column('created_at', tongka.db.UTCDateTime(timezone=True), nullable=False),
    sa.CheckConstraint("last_status IN ('ok', 'failed')", name=op.f('ck_scheduled_jobs_last_status')),
    sa.PrimaryKeyConstraint('name', name=op.f('pk_scheduled_jobs'))
    )


def downgrade() -> None:
    op.drop_table('scheduled_jobs')
