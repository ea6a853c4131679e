"""proposal_settings.flux_calibration: flux-calibrate science automatically (on by default)

Revision ID: 0003
Revises: 0002
Create Date: 2026-11-28 10:40:00

"""
import sqlalchemy as sa
from alembic import op

revision = '0003'
down_revision = '0002'
branch_labels = None
depends_on = None


def upgrade():
    with op.batch_alter_table('proposal_settings', schema=None) as batch_op:
        batch_op.add_column(sa.Column('flux_calibration', sa.Boolean(), nullable=False, server_default=sa.true()))


def downgrade():
    with op.batch_alter_table('proposal_settings', schema=None) as batch_op:
        batch_op.drop_column('flux_calibration')
