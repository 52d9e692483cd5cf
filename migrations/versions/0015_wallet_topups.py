"""wallet top-ups: money for the wallet paid through the providers; a payment is of an order or a top-up

Revision ID: 0015
Revises: 0014
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

import tongka.db

revision = '0015'
down_revision = '0014'
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_table('wallet_topups',
    sa.Column('account_id', sa.Uuid(), nullable=False),
    sa.Column('amount', sa.BigInteger(), nullable=False),
    sa.Column('currency', sa.String(length=3), nullable=False),
    sa.Column('channel', sa.String(length=8), nullable=False),
    sa.Column('status', sa.String(length=24), nullable=False),
    sa.Column('expires_at', tongka.db.UTCDateTime(timezone=True), nullable=False),
    sa.Column('credited_at', tongka.db.UTCDateTime(timezone=True), nullable=True),
    sa.Column('id', sa.Uuid(), nullable=False),
    sa.Column('created_at', tongka.db.UTCDateTime(timezone=True), nullable=False),
    sa.CheckConstraint("status IN ('awaiting_payment', 'credited', 'expired')", name=op.f('ck_wallet_topups_status')),
    sa.CheckConstraint('amount > 0', name=op.f('ck_wallet_topups_amount_positive')),
    sa.ForeignKeyConstraint(['account_id'], ['accounts.id'], name=op.f('fk_wallet_topups_account_id_accounts')),
    sa.PrimaryKeyConstraint('id', name=op.f('pk_wallet_topups'))
    )
    with op.batch_alter_table('wallet_topups', schema=None) as batch_op:
        batch_op.create_index('ix_wallet_topups_account_created', ['account_id', 'created_at'], unique=False)
        batch_op.create_index('ix_wallet_topups_status_expires', ['status', 'expires_at'], unique=False)

    with op.batch_alter_table('payments', schema=None) as batch_op:
        batch_op.add_column(sa.Column('topup_id', sa.Uuid(), nullable=True))
        batch_op.alter_column('order_id',
               existing_type=sa.Uuid(),
               nullable=True)
        batch_op.create_index(batch_op.f('ix_payments_topup_id'), ['topup_id'], unique=False)
        batch_op.create_foreign_key(batch_op.f('fk_payments_topup_id_wallet_topups'), 'wallet_topups', ['topup_id'], ['id'])
        batch_op.create_check_constraint(op.f('ck_payments_order_or_topup'), '(order_id IS NULL) <> (topup_id IS NULL)')



def downgrade() -> None:
    with op.batch_alter_table('payments', schema=None) as batch_op:
        batch_op.drop_constraint(op.f('ck_payments_order_or_topup'), type_='check')
        batch_op.drop_constraint(batch_op.f('fk_payments_topup_id_wallet_topups'), type_='foreignkey')
        batch_op.drop_index(batch_op.f('ix_payments_topup_id'))
        batch_op.alter_column('order_id',
               existing_type=sa.Uuid(),
               nullable=False)
        batch_op.drop_column('topup_id')

    with op.batch_alter_table('wallet_topups', schema=None) as batch_op:
        batch_op.drop_index('ix_wallet_topups_status_expires')
        batch_op.drop_index('ix_wallet_topups_account_created')

    op.drop_table('wallet_topups')
