"""The benchmark suite behind ``fastnmf bench``.

Modules, one idea each:

``workloads``  the matrices (by seed, or from data shipped in packages)
``baseline``   HALS and MU written the obvious NumPy/SciPy way
``peers``      the methods compared, each run the same way into a loss curve
``metrics``    memory, the floor, the loss, time to target, the machine
``worker``     one configuration in its own process
``suite``      the command: plan, run the subprocesses, collect
``report``     the markdown report and the plots

To add a peer, add a runner to ``peers.METHODS``; to add a workload, add it to
``workloads.WORKLOADS``.
"""

from .suite import add_bench_parser, bench_command

__all__ = ["add_bench_parser", "bench_command"]
