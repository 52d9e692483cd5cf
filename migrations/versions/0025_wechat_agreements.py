"""auto-renew paid under a WeChat Pay 委托代扣 contract: the source `wechat_agreement`

Revision ID: 0025
Revises: 0024
"""

from __future__ import annotations

from alembic import op

revision = '0025'
down_revision = '0024'
branch_labels = None
depends_on = None


def upgrade() -> None:
    # The contract itself is an `auto_renew_agreements` row (provider "wechat"): only the
    # rules' source check widens.
    with op.batch_alter_table('auto_renew_rules', schema=None) as batch_op:
        batch_op.drop_constraint(batch_op.f('ck_auto_renew_rules_source'), type_='check')
        batch_op.create_check_constraint('source', "source IN ('wallet', 'card', 'alipay_agreement', 'wechat_agreement')")


def downgrade() -> None:
    op.execute("DELETE FROM auto_renew_rules WHERE source = 'wechat_agreement'")
    with op.batch_alter_table('auto_renew_rules', schema=None) as batch_op:
        batch_op.drop_constraint(batch_op.f('ck_auto_renew_rules_source'), type_='check')
        batch_op.create_check_constraint('source', "source IN ('wallet', 'card', 'alipay_agreement')")
