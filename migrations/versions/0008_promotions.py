"""promotions: offers, coupons, redemptions, quotes

Revision ID: 0008
Revises: 0007
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

import tongka.db

revision = '0008'
down_revision = '0007'
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_table('offers',
    sa.Column('code', sa.String(length=40), nullable=False),
    sa.Column('names', sa.JSON(), nullable=False),
    sa.Column('kind', sa.String(length=16), nullable=False),
    sa.Column('status', sa.String(length=8), nullable=False),
    sa.Column('stackable', sa.Boolean(), nullable=False),
    sa.Column('percent_off_bp', sa.Integer(), nullable=True),
    sa.Column('amount_off', sa.JSON(), nullable=True),
    sa.Column('tiers', sa.JSON(), nullable=True),
    sa.Column('bonus_bytes', sa.BigInteger(), nullable=True),
    sa.Column('bonus_zone', sa.String(length=16), nullable=True),
    sa.Column('bonus_validity_days', sa.Integer(), nullable=True),
    sa.Column('starts_at', tongka.db.UTCDateTime(timezone=True), nullable=True),
    sa.Column('ends_at', tongka.db.UTCDateTime(timezone=True), nullable=True),
    sa.Column('time_zone', sa.String(length=32), nullable=False),
    sa.Column('channels', sa.JSON(), nullable=True),
    sa.Column('currencies', sa.JSON(), nullable=True),
    sa.Column('zones', sa.JSON(), nullable=True),
    sa.Column('pack_codes', sa.JSON(), nullable=True),
    sa.Column('regions', sa.JSON(), nullable=True),
    sa.Column('new_customers_only', sa.Boolean(), nullable=False),
    sa.Column('per_customer_limit', sa.Integer(), nullable=True),
    sa.Column('max_redemptions', sa.Integer(), nullable=True),
    sa.Column('redeemed', sa.Integer(), nullable=False),
    sa.Column('created_by', sa.String(length=64), nullable=False),
    sa.Column('id', sa.Uuid(), nullable=False),
    sa.Column('created_at', tongka.db.UTCDateTime(timezone=True), nullable=False),
    sa.CheckConstraint("kind IN ('first_topup', 'spend_threshold', 'bonus_data', 'coupon')", name=op.f('ck_offers_kind')),
    sa.CheckConstraint("status IN ('active', 'paused', 'ended')", name=op.f('ck_offers_status')),
    sa.CheckConstraint('percent_off_bp IS NULL OR (percent_off_bp > 0 AND percent_off_bp <= 10000)', name=op.f('ck_offers_percent')),
    sa.CheckConstraint('redeemed >= 0', name=op.f('ck_offers_redeemed_not_negative')),
    sa.CheckConstraint('max_redemptions IS NULL OR redeemed <= max_redemptions', name=op.f('ck_offers_within_budget')),
    sa.PrimaryKeyConstraint('id', name=op.f('pk_offers')),
    sa.UniqueConstraint('code', name=op.f('uq_offers_code'))
    )
    op.create_table('offer_budgets',
    sa.Column('offer_id', sa.Uuid(), nullable=False),
    sa.Column('currency', sa.String(length=3), nullable=False),
    sa.Column('max_discount', sa.BigInteger(), nullable=True),
    sa.Column('spent', sa.BigInteger(), nullable=False),
    sa.CheckConstraint('spent >= 0', name=op.f('ck_offer_budgets_spent_not_negative')),
    sa.CheckConstraint('max_discount IS NULL OR spent <= max_discount', name=op.f('ck_offer_budgets_within_budget')),
    sa.ForeignKeyConstraint(['offer_id'], ['offers.id'], name=op.f('fk_offer_budgets_offer_id_offers')),
    sa.PrimaryKeyConstraint('offer_id', 'currency', name=op.f('pk_offer_budgets'))
    )
    op.create_table('coupon_codes',
    sa.Column('offer_id', sa.Uuid(), nullable=False),
    sa.Column('code_hash', sa.String(length=64), nullable=False),
    sa.Column('hint', sa.String(length=8), nullable=False),
    sa.Column('batch', sa.String(length=40), nullable=False),
    sa.Column('max_uses', sa.Integer(), nullable=True),
    sa.Column('used', sa.Integer(), nullable=False),
    sa.Column('id', sa.Uuid(), nullable=False),
    sa.Column('created_at', tongka.db.UTCDateTime(timezone=True), nullable=False),
    sa.CheckConstraint('used >= 0', name=op.f('ck_coupon_codes_used_not_negative')),
    sa.CheckConstraint('max_uses IS NULL OR used <= max_uses', name=op.f('ck_coupon_codes_within_uses')),
    sa.ForeignKeyConstraint(['offer_id'], ['offers.id'], name=op.f('fk_coupon_codes_offer_id_offers')),
    sa.PrimaryKeyConstraint('id', name=op.f('pk_coupon_codes')),
    sa.UniqueConstraint('code_hash', name=op.f('uq_coupon_codes_code_hash'))
    )
    with op.batch_alter_table('coupon_codes', schema=None) as batch_op:
        batch_op.create_index(batch_op.f('ix_coupon_codes_offer_id'), ['offer_id'], unique=False)

    op.create_table('quotes',
    sa.Column('account_id', sa.Uuid(), nullable=False),
    sa.Column('line_id', sa.Uuid(), nullable=False),
    sa.Column('pack_id', sa.Uuid(), nullable=False),
    sa.Column('channel', sa.String(length=8), nullable=False),
    sa.Column('coupon_code_id', sa.Uuid(), nullable=True),
    sa.Column('amount', sa.BigInteger(), nullable=False),
    sa.Column('currency', sa.String(length=3), nullable=False),
    sa.Column('list_amount', sa.BigInteger(), nullable=False),
    sa.Column('list_currency', sa.String(length=3), nullable=False),
    sa.Column('fx_rate_micros', sa.BigInteger(), nullable=True),
    sa.Column('breakdown', sa.JSON(), nullable=False),
    sa.Column('status', sa.String(length=8), nullable=False),
    sa.Column('expires_at', tongka.db.UTCDateTime(timezone=True), nullable=False),
    sa.Column('id', sa.Uuid(), nullable=False),
    sa.Column('created_at', tongka.db.UTCDateTime(timezone=True), nullable=False),
    sa.CheckConstraint("status IN ('open', 'ordered', 'replaced')", name=op.f('ck_quotes_status')),
    sa.CheckConstraint('amount >= 0', name=op.f('ck_quotes_amount_not_negative')),
    sa.ForeignKeyConstraint(['account_id'], ['accounts.id'], name=op.f('fk_quotes_account_id_accounts')),
    sa.ForeignKeyConstraint(['coupon_code_id'], ['coupon_codes.id'], name=op.f('fk_quotes_coupon_code_id_coupon_codes')),
    sa.ForeignKeyConstraint(['line_id'], ['lines.id'], name=op.f('fk_quotes_line_id_lines')),
    sa.ForeignKeyConstraint(['pack_id'], ['packs.id'], name=op.f('fk_quotes_pack_id_packs')),
    sa.PrimaryKeyConstraint('id', name=op.f('pk_quotes'))
    )
    with op.batch_alter_table('quotes', schema=None) as batch_op:
        batch_op.create_index('ix_quotes_account_status', ['account_id', 'status'], unique=False)

    # Orders made before promotions have neither (their breakdown is derived: no offers).
    with op.batch_alter_table('orders', schema=None) as batch_op:
        batch_op.add_column(sa.Column('quote_id', sa.Uuid(), nullable=True))
        batch_op.add_column(sa.Column('breakdown', sa.JSON(), nullable=True))
        batch_op.create_unique_constraint(batch_op.f('uq_orders_quote_id'), ['quote_id'])
        batch_op.create_foreign_key(batch_op.f('fk_orders_quote_id_quotes'), 'quotes', ['quote_id'], ['id'])

    op.create_table('redemptions',
    sa.Column('offer_id', sa.Uuid(), nullable=False),
    sa.Column('account_id', sa.Uuid(), nullable=False),
    sa.Column('quote_id', sa.Uuid(), nullable=False),
    sa.Column('order_id', sa.Uuid(), nullable=True),
    sa.Column('coupon_code_id', sa.Uuid(), nullable=True),
    sa.Column('currency', sa.String(length=3), nullable=False),
    sa.Column('discount', sa.BigInteger(), nullable=False),
    sa.Column('bonus_bytes', sa.BigInteger(), nullable=False),
    sa.Column('status', sa.String(length=16), nullable=False),
    sa.Column('hold_expires_at', tongka.db.UTCDateTime(timezone=True), nullable=True),
    sa.Column('settled_at', tongka.db.UTCDateTime(timezone=True), nullable=True),
    sa.Column('release_reason', sa.String(length=24), nullable=True),
    sa.Column('bonus_bucket_id', sa.Uuid(), nullable=True),
    sa.Column('id', sa.Uuid(), nullable=False),
    sa.Column('created_at', tongka.db.UTCDateTime(timezone=True), nullable=False),
    sa.CheckConstraint("status IN ('held', 'confirmed', 'released')", name=op.f('ck_redemptions_status')),
    sa.CheckConstraint('discount >= 0 AND bonus_bytes >= 0', name=op.f('ck_redemptions_not_negative')),
    sa.ForeignKeyConstraint(['account_id'], ['accounts.id'], name=op.f('fk_redemptions_account_id_accounts')),
    sa.ForeignKeyConstraint(['bonus_bucket_id'], ['buckets.id'], name=op.f('fk_redemptions_bonus_bucket_id_buckets')),
    sa.ForeignKeyConstraint(['coupon_code_id'], ['coupon_codes.id'], name=op.f('fk_redemptions_coupon_code_id_coupon_codes')),
    sa.ForeignKeyConstraint(['offer_id'], ['offers.id'], name=op.f('fk_redemptions_offer_id_offers')),
    sa.ForeignKeyConstraint(['order_id'], ['orders.id'], name=op.f('fk_redemptions_order_id_orders')),
    sa.ForeignKeyConstraint(['quote_id'], ['quotes.id'], name=op.f('fk_redemptions_quote_id_quotes')),
    sa.PrimaryKeyConstraint('id', name=op.f('pk_redemptions')),
    sa.UniqueConstraint('offer_id', 'quote_id', name=op.f('uq_redemptions_offer_id_quote_id'))
    )
    with op.batch_alter_table('redemptions', schema=None) as batch_op:
        batch_op.create_index('ix_redemptions_account_offer', ['account_id', 'offer_id'], unique=False)
        batch_op.create_index('ix_redemptions_offer_status', ['offer_id', 'status'], unique=False)
        batch_op.create_index(batch_op.f('ix_redemptions_order_id'), ['order_id'], unique=False)
        batch_op.create_index(batch_op.f('ix_redemptions_quote_id'), ['quote_id'], unique=False)


def downgrade() -> None:
    with op.batch_alter_table('redemptions', schema=None) as batch_op:
        batch_op.drop_index(batch_op.f('ix_redemptions_quote_id'))
        batch_op.drop_index(batch_op.f('ix_redemptions_order_id'))
        batch_op.drop_index('ix_redemptions_offer_status')
        batch_op.drop_index('ix_redemptions_account_offer')
    op.drop_table('redemptions')
    with op.batch_alter_table('orders', schema=None) as batch_op:
        batch_op.drop_constraint(batch_op.f('fk_orders_quote_id_quotes'), type_='foreignkey')
        batch_op.drop_constraint(batch_op.f('uq_orders_quote_id'), type_='unique')
        batch_op.drop_column('breakdown')
        batch_op.drop_column('quote_id')
    with op.batch_alter_table('quotes', schema=None) as batch_op:
        batch_op.drop_index('ix_quotes_account_status')
    op.drop_table('quotes')
    with op.batch_alter_table('coupon_codes', schema=None) as batch_op:
        batch_op.drop_index(batch_op.f('ix_coupon_codes_offer_id'))
    op.drop_table('coupon_codes')
    op.drop_table('offer_budgets')
    op.drop_table('offers')
