"""proposal_settings.telluric_correction (on by default); files.snr: a 1D product's median S/N per pixel

Revision ID: 0007
Revises: 0006
Create Date: 2026-12-07 06:50:00

"""
import sqlalchemy as sa
from alembic import op

revision = '0007'
down_revision = '0006'
branch_labels = None
depends_on = None


def upgrade():
    with op.batch_alter_table('proposal_settings', schema=None) as batch_op:
        batch_op.add_column(sa.Column('telluric_correction', sa.Boolean(), nullable=False, server_default=sa.true()))
    with op.batch_alter_table('files', schema=None) as batch_op:
        batch_op.add_column(sa.Column('snr', sa.Double(), nullable=True))


def downgrade():
    with op.batch_alter_table('files', schema=None) as batch_op:
        batch_op.drop_column('snr')
    with op.batch_alter_table('proposal_settings', schema=None) as batch_op:
        batch_op.drop_column('telluric_correction')
