"""jobs: the database is the truth (heartbeat, waiting_for, serial_key, lost_runs; no stored rq_id)

Revision ID: 0002
Revises: 0001
Create Date: 2026-11-28 10:10:00

"""
import sqlalchemy as sa
from alembic import op

revision = '0002'
down_revision = '0001'
branch_labels = None
depends_on = None


def upgrade():
    with op.batch_alter_table('jobs', schema=None) as batch_op:
        batch_op.drop_constraint('uq_jobs_rq_id', type_='unique')
        batch_op.drop_column('rq_id')
        batch_op.add_column(sa.Column('waiting_for', sa.String(length=200), nullable=False, server_default=''))
        batch_op.add_column(sa.Column('serial_key', sa.String(length=64), nullable=True))
        batch_op.add_column(sa.Column('lost_runs', sa.Integer(), nullable=False, server_default='0'))
        batch_op.add_column(sa.Column('heartbeat_at', sa.DateTime(timezone=True), nullable=True))
        batch_op.create_index(batch_op.f('ix_jobs_serial_key'), ['serial_key'], unique=False)
        batch_op.create_index('ix_jobs_state_id', ['state', 'id'], unique=False)


def downgrade():
    with op.batch_alter_table('jobs', schema=None) as batch_op:
        batch_op.drop_index('ix_jobs_state_id')
        batch_op.drop_index(batch_op.f('ix_jobs_serial_key'))
        batch_op.drop_column('heartbeat_at')
        batch_op.drop_column('lost_runs')
        batch_op.drop_column('serial_key')
        batch_op.drop_column('waiting_for')
        batch_op.add_column(sa.Column('rq_id', sa.String(length=64), nullable=True))
        batch_op.create_unique_constraint('uq_jobs_rq_id', ['rq_id'])
