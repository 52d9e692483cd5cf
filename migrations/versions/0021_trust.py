"""trust: official channels, scam reports (grouped by value), anti-phishing codes

Revision ID: 0021
Revises: 0020
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

import tongka.db

revision = '0021'
down_revision = '0020'
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_table('official_channels',
    sa.Column('kind', sa.String(length=8), nullable=False),
    sa.Column('platform', sa.String(length=32), nullable=False),
    sa.Column('value', sa.String(length=255), nullable=False),
    sa.Column('labels', sa.JSON(), nullable=False),
    sa.Column('active', sa.Boolean(), nullable=False),
    sa.Column('id', sa.Uuid(), nullable=False),
    sa.Column('created_at', tongka.db.UTCDateTime(timezone=True), nullable=False),
    sa.CheckConstraint("kind IN ('phone', 'web', 'email', 'social')", name=op.f('ck_official_channels_kind')),
    sa.PrimaryKeyConstraint('id', name=op.f('pk_official_channels')),
    sa.UniqueConstraint('kind', 'platform', 'value', name=op.f('uq_official_channels_kind_platform_value'))
    )
    op.create_table('scam_campaigns',
    sa.Column('key', sa.String(length=300), nullable=False),
    sa.Column('status', sa.String(length=24), nullable=False),
    sa.Column('note', sa.Text(), nullable=False),
    sa.Column('id', sa.Uuid(), nullable=False),
    sa.Column('created_at', tongka.db.UTCDateTime(timezone=True), nullable=False),
    sa.CheckConstraint("status IN ('new', 'reviewed', 'reported_to_police')", name=op.f('ck_scam_campaigns_status')),
    sa.PrimaryKeyConstraint('id', name=op.f('pk_scam_campaigns')),
    sa.UniqueConstraint('key', name=op.f('uq_scam_campaigns_key'))
    )
    op.create_table('anti_phishing_codes',
    sa.Column('account_id', sa.Uuid(), nullable=False),
    sa.Column('code', sa.String(length=16), nullable=False),
    sa.Column('set_at', tongka.db.UTCDateTime(timezone=True), nullable=False),
    sa.ForeignKeyConstraint(['account_id'], ['accounts.id'], name=op.f('fk_anti_phishing_codes_account_id_accounts')),
    sa.PrimaryKeyConstraint('account_id', name=op.f('pk_anti_phishing_codes'))
    )
    op.create_table('scam_reports',
    sa.Column('campaign_id', sa.Uuid(), nullable=False),
    sa.Column('value', sa.String(length=300), nullable=False),
    sa.Column('seen_in', sa.String(length=16), nullable=False),
    sa.Column('text', sa.Text(), nullable=False),
    sa.Column('screenshot', sa.LargeBinary(), nullable=True),
    sa.Column('screenshot_type', sa.String(length=16), nullable=True),
    sa.Column('id', sa.Uuid(), nullable=False),
    sa.Column('created_at', tongka.db.UTCDateTime(timezone=True), nullable=False),
    sa.CheckConstraint("seen_in IN ('sms', 'call', 'messaging', 'email', 'web', 'other')", name=op.f('ck_scam_reports_seen_in')),
    sa.ForeignKeyConstraint(['campaign_id'], ['scam_campaigns.id'], name=op.f('fk_scam_reports_campaign_id_scam_campaigns')),
    sa.PrimaryKeyConstraint('id', name=op.f('pk_scam_reports'))
    )
    with op.batch_alter_table('scam_reports', schema=None) as batch_op:
        batch_op.create_index(batch_op.f('ix_scam_reports_campaign_id'), ['campaign_id'], unique=False)



def downgrade() -> None:
    with op.batch_alter_table('scam_reports', schema=None) as batch_op:
        batch_op.drop_index(batch_op.f('ix_scam_reports_campaign_id'))

    op.drop_table('scam_reports')
    op.drop_table('anti_phishing_codes')
    op.drop_table('scam_campaigns')
    op.drop_table('official_channels')
