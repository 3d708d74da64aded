"""`kuik-replicator`: mirrors the images Pods use and cleans up the unused ones."""

from kuik_replicator.service import run
from kuikcore.service import ConfigOption, service_command

main = service_command(
    "replicator",
    run,
    options=[
        ConfigOption("--workers", "mirroring.workers", "Concurrent copies in this process.", int),
        ConfigOption(
            "--cluster-id", "clusterID", "This cluster's id in shared Redis usage records."
        ),
    ],
    help="kube-image-keeper replicator: mirrors images in use, cleans up unused mirrors.",
)

if __name__ == "__main__":
    main()
