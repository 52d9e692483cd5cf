"""auto-renew paid under a wallet's password-free agreement (Alipay's 商家扣款)

Revision ID: 0024
Revises: 0023
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

import tongka.db


revision = '0024'
down_revision = '0023'
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_table('auto_renew_agreements',
    sa.Column('account_id', sa.Uuid(), nullable=False),
    sa.Column('provider', sa.String(length=16), nullable=False),
    sa.Column('agreement_no', sa.String(length=64), nullable=False),
    sa.Column('label', sa.String(length=40), nullable=False),
    sa.Column('id', sa.Uuid(), nullable=False),
    sa.Column('created_at', tongka.db.UTCDateTime(timezone=True), nullable=False),
    sa.ForeignKeyConstraint(['account_id'], ['accounts.id'], name=op.f('fk_auto_renew_agreements_account_id_accounts')),
    sa.PrimaryKeyConstraint('id', name=op.f('pk_auto_renew_agreements')),
    sa.UniqueConstraint('account_id', 'provider', name=op.f('uq_auto_renew_agreements_account_id_provider'))
    )
    with op.batch_alter_table('auto_renew_rules', schema=None) as batch_op:
        batch_op.drop_constraint(batch_op.f('ck_auto_renew_rules_source'), type_='check')
        batch_op.alter_column('source', existing_type=sa.String(length=8), type_=sa.String(length=24), existing_nullable=False)
        batch_op.create_check_constraint('source', "source IN ('wallet', 'card', 'alipay_agreement')")


def downgrade() -> None:
    with op.batch_alter_table('auto_renew_rules', schema=None) as batch_op:
        batch_op.drop_constraint(batch_op.f('ck_auto_renew_rules_source'), type_='check')
        batch_op.alter_column('source', existing_type=sa.String(length=24), type_=sa.String(length=8), existing_nullable=False)
        batch_op.create_check_constraint('source', "source IN ('wallet', 'card')")
    op.drop_table('auto_renew_agreements')
