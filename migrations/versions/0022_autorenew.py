"""auto-renew: a rule per line, a saved card per account, an attempt per crossing of a threshold

Revision ID: 0022
Revises: 0021
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

import tongka.db


revision = '0022'
down_revision = '0021'
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_table('auto_renew_cards',
    sa.Column('account_id', sa.Uuid(), nullable=False),
    sa.Column('provider', sa.String(length=16), nullable=False),
    sa.Column('customer', sa.String(length=64), nullable=False),
    sa.Column('method', sa.String(length=64), nullable=False),
    sa.Column('label', sa.String(length=40), nullable=False),
    sa.Column('id', sa.Uuid(), nullable=False),
    sa.Column('created_at', tongka.db.UTCDateTime(timezone=True), nullable=False),
    sa.ForeignKeyConstraint(['account_id'], ['accounts.id'], name=op.f('fk_auto_renew_cards_account_id_accounts')),
    sa.PrimaryKeyConstraint('id', name=op.f('pk_auto_renew_cards')),
    sa.UniqueConstraint('account_id', name=op.f('uq_auto_renew_cards_account_id'))
    )
    op.create_table('auto_renew_rules',
    sa.Column('account_id', sa.Uuid(), nullable=False),
    sa.Column('line_id', sa.Uuid(), nullable=False),
    sa.Column('zone', sa.String(length=16), nullable=False),
    sa.Column('threshold_percent', sa.Integer(), nullable=False),
    sa.Column('forecast_days', sa.Integer(), nullable=True),
    sa.Column('pack_id', sa.Uuid(), nullable=False),
    sa.Column('source', sa.String(length=8), nullable=False),
    sa.Column('monthly_cap', sa.BigInteger(), nullable=False),
    sa.Column('currency', sa.String(length=3), nullable=False),
    sa.Column('active', sa.Boolean(), nullable=False),
    sa.Column('consecutive_failures', sa.Integer(), nullable=False),
    sa.Column('last_failure_at', tongka.db.UTCDateTime(timezone=True), nullable=True),
    sa.Column('updated_at', tongka.db.UTCDateTime(timezone=True), nullable=True),
    sa.Column('id', sa.Uuid(), nullable=False),
    sa.Column('created_at', tongka.db.UTCDateTime(timezone=True), nullable=False),
    sa.CheckConstraint("source IN ('wallet', 'card')", name=op.f('ck_auto_renew_rules_source')),
    sa.CheckConstraint("zone IN ('mainland', 'hk')", name=op.f('ck_auto_renew_rules_zone')),
    sa.CheckConstraint('monthly_cap >= 0', name=op.f('ck_auto_renew_rules_monthly_cap_not_negative')),
    sa.CheckConstraint('threshold_percent BETWEEN 1 AND 99', name=op.f('ck_auto_renew_rules_threshold_percent')),
    sa.ForeignKeyConstraint(['account_id'], ['accounts.id'], name=op.f('fk_auto_renew_rules_account_id_accounts')),
    sa.ForeignKeyConstraint(['line_id'], ['lines.id'], name=op.f('fk_auto_renew_rules_line_id_lines')),
    sa.ForeignKeyConstraint(['pack_id'], ['packs.id'], name=op.f('fk_auto_renew_rules_pack_id_packs')),
    sa.PrimaryKeyConstraint('id', name=op.f('pk_auto_renew_rules')),
    sa.UniqueConstraint('line_id', name=op.f('uq_auto_renew_rules_line_id'))
    )
    with op.batch_alter_table('auto_renew_rules', schema=None) as batch_op:
        batch_op.create_index(batch_op.f('ix_auto_renew_rules_account_id'), ['account_id'], unique=False)

    op.create_table('auto_renew_attempts',
    sa.Column('rule_id', sa.Uuid(), nullable=False),
    sa.Column('line_id', sa.Uuid(), nullable=False),
    sa.Column('crossing', sa.String(length=80), nullable=False),
    sa.Column('status', sa.String(length=16), nullable=False),
    sa.Column('month', sa.String(length=7), nullable=False),
    sa.Column('amount', sa.BigInteger(), nullable=False),
    sa.Column('currency', sa.String(length=3), nullable=False),
    sa.Column('order_id', sa.Uuid(), nullable=True),
    sa.Column('payment_id', sa.Uuid(), nullable=True),
    sa.Column('reason', sa.String(length=64), nullable=True),
    sa.Column('settled_at', tongka.db.UTCDateTime(timezone=True), nullable=True),
    sa.Column('id', sa.Uuid(), nullable=False),
    sa.Column('created_at', tongka.db.UTCDateTime(timezone=True), nullable=False),
    sa.CheckConstraint("status IN ('pending', 'succeeded', 'failed', 'capped')", name=op.f('ck_auto_renew_attempts_status')),
    sa.CheckConstraint('amount >= 0', name=op.f('ck_auto_renew_attempts_amount_not_negative')),
    sa.ForeignKeyConstraint(['line_id'], ['lines.id'], name=op.f('fk_auto_renew_attempts_line_id_lines')),
    sa.ForeignKeyConstraint(['order_id'], ['orders.id'], name=op.f('fk_auto_renew_attempts_order_id_orders')),
    sa.PrimaryKeyConstraint('id', name=op.f('pk_auto_renew_attempts')),
    sa.UniqueConstraint('rule_id', 'crossing', name=op.f('uq_auto_renew_attempts_rule_id_crossing'))
    )
    with op.batch_alter_table('auto_renew_attempts', schema=None) as batch_op:
        batch_op.create_index('ix_auto_renew_attempts_line_month', ['line_id', 'month'], unique=False)



def downgrade() -> None:
    with op.batch_alter_table('auto_renew_attempts', schema=None) as batch_op:
        batch_op.drop_index('ix_auto_renew_attempts_line_month')

    op.drop_table('auto_renew_attempts')
    with op.batch_alter_table('auto_renew_rules', schema=None) as batch_op:
        batch_op.drop_index(batch_op.f('ix_auto_renew_rules_account_id'))

    op.drop_table('auto_renew_rules')
    op.drop_table('auto_renew_cards')
