"""staff: staff members, their sessions, the audit log; counter sales, shifts, commission rates

Revision ID: 0017
Revises: 0016
"""

from __future__ import annotations

import uuid
from datetime import UTC, datetime

import sqlalchemy as sa
from alembic import op

import tongka.db

revision = '0017'
down_revision = '0016'
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_table('staff_members',
    sa.Column('username', sa.String(length=32), nullable=False),
    sa.Column('display_name', sa.String(length=64), nullable=False),
    sa.Column('password_hash', sa.String(length=200), nullable=False),
    sa.Column('role', sa.String(length=16), nullable=False),
    sa.Column('store_id', sa.Uuid(), nullable=True),
    sa.Column('totp_sealed', sa.String(length=200), nullable=True),
    sa.Column('totp_pending', sa.String(length=200), nullable=True),
    sa.Column('totp_last_step', sa.BigInteger(), nullable=False),
    sa.Column('active', sa.Boolean(), nullable=False),
    sa.Column('id', sa.Uuid(), nullable=False),
    sa.Column('created_at', tongka.db.UTCDateTime(timezone=True), nullable=False),
    sa.CheckConstraint("(role = 'admin') = (store_id IS NULL)", name=op.f('ck_staff_members_store')),
    sa.CheckConstraint("role IN ('agent', 'manager', 'admin')", name=op.f('ck_staff_members_role')),
    sa.ForeignKeyConstraint(['store_id'], ['stores.id'], name=op.f('fk_staff_members_store_id_stores')),
    sa.PrimaryKeyConstraint('id', name=op.f('pk_staff_members')),
    sa.UniqueConstraint('username', name=op.f('uq_staff_members_username'))
    )
    with op.batch_alter_table('staff_members', schema=None) as batch_op:
        batch_op.create_index(batch_op.f('ix_staff_members_store_id'), ['store_id'], unique=False)

    op.create_table('audit_log',
    sa.Column('at', tongka.db.UTCDateTime(timezone=True), nullable=False),
    sa.Column('staff_id', sa.Uuid(), nullable=True),
    sa.Column('username', sa.String(length=32), nullable=False),
    sa.Column('role', sa.String(length=16), nullable=False),
    sa.Column('store_code', sa.String(length=40), nullable=True),
    sa.Column('action', sa.String(length=64), nullable=False),
    sa.Column('object_type', sa.String(length=32), nullable=False),
    sa.Column('object_id', sa.String(length=64), nullable=True),
    sa.Column('before', sa.JSON(), nullable=True),
    sa.Column('after', sa.JSON(), nullable=True),
    sa.Column('address', sa.String(length=64), nullable=True),
    sa.Column('id', sa.Uuid(), nullable=False),
    sa.ForeignKeyConstraint(['staff_id'], ['staff_members.id'], name=op.f('fk_audit_log_staff_id_staff_members')),
    sa.PrimaryKeyConstraint('id', name=op.f('pk_audit_log'))
    )
    with op.batch_alter_table('audit_log', schema=None) as batch_op:
        batch_op.create_index('ix_audit_log_at', ['at'], unique=False)
        batch_op.create_index('ix_audit_log_object', ['object_id'], unique=False)
        batch_op.create_index(batch_op.f('ix_audit_log_staff_id'), ['staff_id'], unique=False)

    op.create_table('commission_rates',
    sa.Column('pack_id', sa.Uuid(), nullable=True),
    sa.Column('store_id', sa.Uuid(), nullable=True),
    sa.Column('staff_id', sa.Uuid(), nullable=True),
    sa.Column('rate_bp', sa.Integer(), nullable=False),
    sa.Column('valid_from', tongka.db.UTCDateTime(timezone=True), nullable=False),
    sa.Column('created_by', sa.String(length=32), nullable=False),
    sa.Column('id', sa.Uuid(), nullable=False),
    sa.Column('created_at', tongka.db.UTCDateTime(timezone=True), nullable=False),
    sa.CheckConstraint('rate_bp >= 0 AND rate_bp <= 10000', name=op.f('ck_commission_rates_rate')),
    sa.ForeignKeyConstraint(['pack_id'], ['packs.id'], name=op.f('fk_commission_rates_pack_id_packs')),
    sa.ForeignKeyConstraint(['staff_id'], ['staff_members.id'], name=op.f('fk_commission_rates_staff_id_staff_members')),
    sa.ForeignKeyConstraint(['store_id'], ['stores.id'], name=op.f('fk_commission_rates_store_id_stores')),
    sa.PrimaryKeyConstraint('id', name=op.f('pk_commission_rates'))
    )
    op.create_table('shifts',
    sa.Column('store_id', sa.Uuid(), nullable=False),
    sa.Column('staff_id', sa.Uuid(), nullable=False),
    sa.Column('currency', sa.String(length=3), nullable=False),
    sa.Column('status', sa.String(length=16), nullable=False),
    sa.Column('opened_at', tongka.db.UTCDateTime(timezone=True), nullable=False),
    sa.Column('float_amount', sa.BigInteger(), nullable=False),
    sa.Column('closed_at', tongka.db.UTCDateTime(timezone=True), nullable=True),
    sa.Column('counted_denominations', sa.JSON(), nullable=True),
    sa.Column('counted_amount', sa.BigInteger(), nullable=True),
    sa.Column('expected_amount', sa.BigInteger(), nullable=True),
    sa.Column('difference', sa.BigInteger(), nullable=True),
    sa.Column('close_note', sa.String(length=200), nullable=True),
    sa.Column('acknowledged_by', sa.Uuid(), nullable=True),
    sa.Column('acknowledged_at', tongka.db.UTCDateTime(timezone=True), nullable=True),
    sa.Column('acknowledge_note', sa.String(length=200), nullable=True),
    sa.Column('id', sa.Uuid(), nullable=False),
    sa.CheckConstraint("status IN ('open', 'closed', 'acknowledged')", name=op.f('ck_shifts_status')),
    sa.CheckConstraint('float_amount >= 0', name=op.f('ck_shifts_float')),
    sa.ForeignKeyConstraint(['acknowledged_by'], ['staff_members.id'], name=op.f('fk_shifts_acknowledged_by_staff_members')),
    sa.ForeignKeyConstraint(['staff_id'], ['staff_members.id'], name=op.f('fk_shifts_staff_id_staff_members')),
    sa.ForeignKeyConstraint(['store_id'], ['stores.id'], name=op.f('fk_shifts_store_id_stores')),
    sa.PrimaryKeyConstraint('id', name=op.f('pk_shifts'))
    )
    with op.batch_alter_table('shifts', schema=None) as batch_op:
        batch_op.create_index(batch_op.f('ix_shifts_staff_id'), ['staff_id'], unique=False)
        batch_op.create_index(batch_op.f('ix_shifts_store_id'), ['store_id'], unique=False)
        batch_op.create_index('uq_shifts_open_staff', ['staff_id'], unique=True, sqlite_where=sa.text("status = 'open'"), postgresql_where=sa.text("status = 'open'"))

    op.create_table('staff_sessions',
    sa.Column('token_hash', sa.String(length=64), nullable=False),
    sa.Column('staff_id', sa.Uuid(), nullable=False),
    sa.Column('expires_at', tongka.db.UTCDateTime(timezone=True), nullable=False),
    sa.Column('last_seen_at', tongka.db.UTCDateTime(timezone=True), nullable=False),
    sa.Column('address', sa.String(length=64), nullable=True),
    sa.Column('created_at', tongka.db.UTCDateTime(timezone=True), nullable=False),
    sa.ForeignKeyConstraint(['staff_id'], ['staff_members.id'], name=op.f('fk_staff_sessions_staff_id_staff_members')),
    sa.PrimaryKeyConstraint('token_hash', name=op.f('pk_staff_sessions'))
    )
    with op.batch_alter_table('staff_sessions', schema=None) as batch_op:
        batch_op.create_index(batch_op.f('ix_staff_sessions_staff_id'), ['staff_id'], unique=False)

    op.create_table('counter_sales',
    sa.Column('order_id', sa.Uuid(), nullable=False),
    sa.Column('payment_id', sa.Uuid(), nullable=True),
    sa.Column('store_id', sa.Uuid(), nullable=False),
    sa.Column('staff_id', sa.Uuid(), nullable=False),
    sa.Column('shift_id', sa.Uuid(), nullable=True),
    sa.Column('pack_id', sa.Uuid(), nullable=False),
    sa.Column('method', sa.String(length=16), nullable=False),
    sa.Column('currency', sa.String(length=3), nullable=False),
    sa.Column('amount', sa.BigInteger(), nullable=False),
    sa.Column('tendered', sa.BigInteger(), nullable=True),
    sa.Column('change', sa.BigInteger(), nullable=True),
    sa.Column('approval_code', sa.String(length=32), nullable=True),
    sa.Column('paid_at', tongka.db.UTCDateTime(timezone=True), nullable=True),
    sa.Column('id', sa.Uuid(), nullable=False),
    sa.Column('created_at', tongka.db.UTCDateTime(timezone=True), nullable=False),
    sa.CheckConstraint("method IN ('cash', 'card_terminal', 'store_qr', 'wechat_pay_qr', 'alipay_qr')", name=op.f('ck_counter_sales_method')),
    sa.CheckConstraint('amount > 0', name=op.f('ck_counter_sales_amount')),
    sa.ForeignKeyConstraint(['order_id'], ['orders.id'], name=op.f('fk_counter_sales_order_id_orders')),
    sa.ForeignKeyConstraint(['pack_id'], ['packs.id'], name=op.f('fk_counter_sales_pack_id_packs')),
    sa.ForeignKeyConstraint(['payment_id'], ['payments.id'], name=op.f('fk_counter_sales_payment_id_payments')),
    sa.ForeignKeyConstraint(['shift_id'], ['shifts.id'], name=op.f('fk_counter_sales_shift_id_shifts')),
    sa.ForeignKeyConstraint(['staff_id'], ['staff_members.id'], name=op.f('fk_counter_sales_staff_id_staff_members')),
    sa.ForeignKeyConstraint(['store_id'], ['stores.id'], name=op.f('fk_counter_sales_store_id_stores')),
    sa.PrimaryKeyConstraint('id', name=op.f('pk_counter_sales')),
    sa.UniqueConstraint('order_id', name=op.f('uq_counter_sales_order_id'))
    )
    with op.batch_alter_table('counter_sales', schema=None) as batch_op:
        batch_op.create_index(batch_op.f('ix_counter_sales_shift_id'), ['shift_id'], unique=False)
        batch_op.create_index(batch_op.f('ix_counter_sales_staff_id'), ['staff_id'], unique=False)
        batch_op.create_index('ix_counter_sales_store_created', ['store_id', 'created_at'], unique=False)

    # Operator accounts were subscriber accounts with a role; they become admins of their own
    # (same username and password), who set up TOTP at their first log-in.
    accounts = sa.table('accounts', sa.column('username', sa.String), sa.column('password_hash', sa.String), sa.column('role', sa.String))
    staff = sa.table(
        'staff_members',
        sa.column('id', sa.Uuid()),
        sa.column('created_at', tongka.db.UTCDateTime()),
        *(sa.column(c, sa.String()) for c in ('username', 'display_name', 'password_hash', 'role')),
        sa.column('store_id', sa.Uuid()),
        sa.column('totp_last_step', sa.BigInteger()),
        sa.column('active', sa.Boolean()),
    )
    bind = op.get_bind()
    now = datetime.now(UTC)
    for username, password_hash in bind.execute(sa.select(accounts.c.username, accounts.c.password_hash).where(accounts.c.role == 'operator')).all():
        bind.execute(staff.insert().values(id=uuid.uuid4(), created_at=now, username=username, display_name=username, password_hash=password_hash, role='admin', store_id=None, totp_last_step=0, active=True))
    with op.batch_alter_table('accounts', schema=None) as batch_op:
        batch_op.drop_column('role')

    with op.batch_alter_table('idempotency_records', schema=None) as batch_op:
        batch_op.drop_constraint(batch_op.f('fk_idempotency_records_account_id_accounts'), type_='foreignkey')



def downgrade() -> None:
    with op.batch_alter_table('idempotency_records', schema=None) as batch_op:
        batch_op.create_foreign_key(batch_op.f('fk_idempotency_records_account_id_accounts'), 'accounts', ['account_id'], ['id'])

    with op.batch_alter_table('accounts', schema=None) as batch_op:
        batch_op.add_column(sa.Column('role', sa.VARCHAR(length=16), nullable=False, server_default='subscriber'))

    with op.batch_alter_table('counter_sales', schema=None) as batch_op:
        batch_op.drop_index('ix_counter_sales_store_created')
        batch_op.drop_index(batch_op.f('ix_counter_sales_staff_id'))
        batch_op.drop_index(batch_op.f('ix_counter_sales_shift_id'))

    op.drop_table('counter_sales')
    with op.batch_alter_table('staff_sessions', schema=None) as batch_op:
        batch_op.drop_index(batch_op.f('ix_staff_sessions_staff_id'))

    op.drop_table('staff_sessions')
    with op.batch_alter_table('shifts', schema=None) as batch_op:
        batch_op.drop_index('uq_shifts_open_staff', sqlite_where=sa.text("status = 'open'"), postgresql_where=sa.text("status = 'open'"))
        batch_op.drop_index(batch_op.f('ix_shifts_store_id'))
        batch_op.drop_index(batch_op.f('ix_shifts_staff_id'))

    op.drop_table('shifts')
    op.drop_table('commission_rates')
    with op.batch_alter_table('audit_log', schema=None) as batch_op:
        batch_op.drop_index(batch_op.f('ix_audit_log_staff_id'))
        batch_op.drop_index('ix_audit_log_object')
        batch_op.drop_index('ix_audit_log_at')

    op.drop_table('audit_log')
    with op.batch_alter_table('staff_members', schema=None) as batch_op:
        batch_op.drop_index(batch_op.f('ix_staff_members_store_id'))

    op.drop_table('staff_members')
