"""cass-hpc's Hydra launchers, where Hydra looks for plug-ins (it instantiates launcher classes
only from the ``hydra_plugins`` namespace). The code lives in ``cass_hpc``; these names are
what ``conf/hydra/launcher/*.yaml`` set as ``_target_``."""

from cass_hpc.dag_launcher import DagSlurmLauncher as _DagSlurmLauncher
from cass_hpc.launcher import ContainerSlurmLauncher as _ContainerSlurmLauncher
from cass_hpc.local_launcher import DagLocalLauncher as _DagLocalLauncher


class LocalStagesLauncher(_DagLocalLauncher):
    """``hydra/launcher=local``: a grid's stages on this machine (cass_hpc.local_launcher)."""


class SlurmStagesLauncher(_DagSlurmLauncher):
    """``hydra/launcher=slurm|rtx8000|testcluster``: a DAG of SLURM jobs (cass_hpc.dag_launcher)."""


class ContainerStagesLauncher(_ContainerSlurmLauncher):
    """``hydra/launcher=apptainer*``: the same DAG, each job in the image (cass_hpc.launcher)."""
