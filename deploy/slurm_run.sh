#!/usr/bin/env bash
# Run cindra-dask as one SLURM batch job: the scheduler and a LocalCluster live inside the job's
# allocation (no jobqueue needed). Submit with:  sbatch deploy/slurm_run.sh my_recording.yaml
#SBATCH --job-name=cindra-dask
#SBATCH --cpus-per-task=16
#SBATCH --mem=64G
#SBATCH --time=04:00:00
#SBATCH --output=cindra-dask-%j.log
set -euo pipefail
CONFIG=${1:?usage: sbatch deploy/slurm_run.sh CONFIG.yaml}
# activate the environment cindra-dask was installed into (adjust to your site)
source "${CINDRA_DASK_VENV:-$HOME/cindra-dask/.venv}/bin/activate"
# one worker per allocated core, memory split evenly; the dashboard link is printed in the log
# (tunnel to it with: ssh -L 8787:$(hostname):8787 login-node)
cindra-dask run "$CONFIG" \
  --workers "${SLURM_CPUS_PER_TASK:-16}" \
  --set cluster.memory_limit_per_worker="$(( ${SLURM_MEM_PER_NODE:-65536} / ${SLURM_CPUS_PER_TASK:-16} ))MiB" \
  --no-progress
# For many recordings, submit one job per configuration, or use deploy/jobqueue_slurm.yaml to let
# one driver start worker jobs on the queue.
