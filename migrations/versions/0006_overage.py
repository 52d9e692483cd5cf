"""overage: rates per zone, wallets, line overage settings, data owed, notifications to the network

Revision ID: 0006
Revises: 0005
"""

from __future__ import annotations

from datetime import UTC, datetime

import sqlalchemy as sa
from alembic import op

import tongka.db

revision = '0006'
down_revision = '0005'
branch_labels = None
depends_on = None

BigId = sa.BigInteger().with_variant(sa.Integer(), 'sqlite')

# The published overage rates, minor units per MB (1 MB = 1,048,576 bytes); the operator edits them.
RATES = [
    ('mainland', 'CNY', 6), ('mainland', 'HKD', 7),
    ('hk', 'CNY', 5), ('hk', 'HKD', 5),
]


def upgrade() -> None:
    op.create_table('overage_rates',
    sa.Column('zone', sa.String(length=16), nullable=False),
    sa.Column('currency', sa.String(length=3), nullable=False),
    sa.Column('per_mb', sa.BigInteger(), nullable=False),
    sa.Column('created_at', tongka.db.UTCDateTime(timezone=True), nullable=False),
    sa.CheckConstraint("zone IN ('mainland', 'hk')", name=op.f('ck_overage_rates_zone')),
    sa.CheckConstraint('per_mb > 0', name=op.f('ck_overage_rates_positive')),
    sa.PrimaryKeyConstraint('zone', 'currency', name=op.f('pk_overage_rates'))
    )
    op.create_table('wallets',
    sa.Column('account_id', sa.Uuid(), nullable=False),
    sa.Column('currency', sa.String(length=3), nullable=False),
    sa.Column('ledger_account_id', BigId, nullable=False),
    sa.Column('id', sa.Uuid(), nullable=False),
    sa.Column('created_at', tongka.db.UTCDateTime(timezone=True), nullable=False),
    sa.ForeignKeyConstraint(['account_id'], ['accounts.id'], name=op.f('fk_wallets_account_id_accounts')),
    sa.ForeignKeyConstraint(['ledger_account_id'], ['ledger_accounts.id'], name=op.f('fk_wallets_ledger_account_id_ledger_accounts')),
    sa.PrimaryKeyConstraint('id', name=op.f('pk_wallets')),
    sa.UniqueConstraint('account_id', name=op.f('uq_wallets_account_id')),
    sa.UniqueConstraint('ledger_account_id', name=op.f('uq_wallets_ledger_account_id'))
    )
    op.create_table('line_debts',
    sa.Column('line_id', sa.Uuid(), nullable=False),
    sa.Column('zone', sa.String(length=16), nullable=False),
    sa.Column('ledger_account_id', BigId, nullable=False),
    sa.ForeignKeyConstraint(['ledger_account_id'], ['ledger_accounts.id'], name=op.f('fk_line_debts_ledger_account_id_ledger_accounts')),
    sa.ForeignKeyConstraint(['line_id'], ['lines.id'], name=op.f('fk_line_debts_line_id_lines')),
    sa.PrimaryKeyConstraint('line_id', 'zone', name=op.f('pk_line_debts')),
    sa.UniqueConstraint('ledger_account_id', name=op.f('uq_line_debts_ledger_account_id'))
    )
    op.create_table('line_overage',
    sa.Column('line_id', sa.Uuid(), nullable=False),
    sa.Column('enabled', sa.Boolean(), nullable=False),
    sa.Column('monthly_cap', sa.BigInteger(), nullable=False),
    sa.Column('currency', sa.String(length=3), nullable=False),
    sa.Column('updated_at', tongka.db.UTCDateTime(timezone=True), nullable=False),
    sa.CheckConstraint('monthly_cap >= 0', name=op.f('ck_line_overage_cap_not_negative')),
    sa.ForeignKeyConstraint(['line_id'], ['lines.id'], name=op.f('fk_line_overage_line_id_lines')),
    sa.PrimaryKeyConstraint('line_id', name=op.f('pk_line_overage'))
    )
    op.create_table('overage_months',
    sa.Column('line_id', sa.Uuid(), nullable=False),
    sa.Column('month', sa.Date(), nullable=False),
    sa.Column('currency', sa.String(length=3), nullable=False),
    sa.Column('charged', sa.BigInteger(), nullable=False),
    sa.Column('volume_bytes', sa.BigInteger(), nullable=False),
    sa.CheckConstraint('charged >= 0 AND volume_bytes >= 0', name=op.f('ck_overage_months_not_negative')),
    sa.ForeignKeyConstraint(['line_id'], ['lines.id'], name=op.f('fk_overage_months_line_id_lines')),
    sa.PrimaryKeyConstraint('line_id', 'month', name=op.f('pk_overage_months'))
    )
    op.create_table('charging_notifications',
    sa.Column('charging_session_id', sa.Uuid(), nullable=False),
    sa.Column('uri', sa.String(length=2048), nullable=False),
    sa.Column('body', sa.JSON(), nullable=False),
    sa.Column('status', sa.String(length=16), nullable=False),
    sa.Column('attempts', sa.Integer(), nullable=False),
    sa.Column('next_attempt_at', tongka.db.UTCDateTime(timezone=True), nullable=False),
    sa.Column('last_error', sa.String(length=500), nullable=True),
    sa.Column('sent_at', tongka.db.UTCDateTime(timezone=True), nullable=True),
    sa.Column('id', sa.Uuid(), nullable=False),
    sa.Column('created_at', tongka.db.UTCDateTime(timezone=True), nullable=False),
    sa.CheckConstraint("status IN ('pending', 'sent', 'failed')", name=op.f('ck_charging_notifications_status')),
    sa.ForeignKeyConstraint(['charging_session_id'], ['charging_sessions.id'], name=op.f('fk_charging_notifications_charging_session_id_charging_sessions')),
    sa.PrimaryKeyConstraint('id', name=op.f('pk_charging_notifications'))
    )
    with op.batch_alter_table('charging_notifications', schema=None) as batch_op:
        batch_op.create_index('ix_charging_notifications_due', ['status', 'next_attempt_at'], unique=False)

    with op.batch_alter_table('charging_sessions', schema=None) as batch_op:
        batch_op.add_column(sa.Column('notify_uri', sa.String(length=2048), nullable=True))
        batch_op.add_column(sa.Column('create_key', sa.String(length=64), nullable=True))
        batch_op.create_unique_constraint(batch_op.f('uq_charging_sessions_create_key'), ['create_key'])

    # Reservations so far were all on buckets: their volume is their amount.
    with op.batch_alter_table('grant_reservations', schema=None) as batch_op:
        batch_op.add_column(sa.Column('volume_bytes', sa.BigInteger(), nullable=True))
        batch_op.add_column(sa.Column('per_mb', sa.BigInteger(), nullable=True))
    op.execute('UPDATE grant_reservations SET volume_bytes = amount')
    with op.batch_alter_table('grant_reservations', schema=None) as batch_op:
        batch_op.alter_column('volume_bytes', existing_type=sa.BigInteger(), nullable=False)
        batch_op.alter_column('bucket_id', existing_type=sa.Uuid(), nullable=True)
        batch_op.create_check_constraint('bucket_or_overage', '(bucket_id IS NULL) = (per_mb IS NOT NULL)')

    # Operator accounts keep no running totals from now on (their balance is the sum of their
    # transfers): they were the one row every charging request had to lock.
    op.execute(
        "UPDATE ledger_accounts SET debits_posted = 0, credits_posted = 0, debits_pending = 0, credits_pending = 0 "
        "WHERE kind = 'system'"
    )

    rates = sa.table(
        'overage_rates',
        sa.column('zone', sa.String), sa.column('currency', sa.String), sa.column('per_mb', sa.BigInteger),
        sa.column('created_at', tongka.db.UTCDateTime(timezone=True)),
    )
    now = datetime.now(UTC)
    op.bulk_insert(rates, [{'zone': z, 'currency': c, 'per_mb': p, 'created_at': now} for z, c, p in RATES])


def downgrade() -> None:
    with op.batch_alter_table('grant_reservations', schema=None) as batch_op:
        batch_op.drop_constraint('bucket_or_overage', type_='check')
        batch_op.drop_column('per_mb')
        batch_op.drop_column('volume_bytes')
    with op.batch_alter_table('charging_sessions', schema=None) as batch_op:
        batch_op.drop_constraint(batch_op.f('uq_charging_sessions_create_key'), type_='unique')
        batch_op.drop_column('create_key')
        batch_op.drop_column('notify_uri')
    with op.batch_alter_table('charging_notifications', schema=None) as batch_op:
        batch_op.drop_index('ix_charging_notifications_due')
    for table in ('charging_notifications', 'overage_months', 'line_overage', 'line_debts', 'wallets', 'overage_rates'):
        op.drop_table(table)
