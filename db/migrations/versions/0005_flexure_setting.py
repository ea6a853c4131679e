"""proposal_settings.flexure_correction: correct each science frame's flexure from its sky lines (on by default)

Revision ID: 0005
Revises: 0004
Create Date: 2026-11-28 13:00:00

"""
import sqlalchemy as sa
from alembic import op

revision = '0005'
down_revision = '0004'
branch_labels = None
depends_on = None


def upgrade():
    with op.batch_alter_table('proposal_settings', schema=None) as batch_op:
        batch_op.add_column(sa.Column('flexure_correction', sa.Boolean(), nullable=False, server_default=sa.true()))


def downgrade():
    with op.batch_alter_table('proposal_settings', schema=None) as batch_op:
        batch_op.drop_column('flexure_correction')
