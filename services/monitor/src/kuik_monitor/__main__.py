"""`kuik-monitor`: watches whether the images in use can still be pulled."""

from kuik_monitor.service import run
from kuikcore.service import service_command

main = service_command(
    "monitor",
    run,
    help="kube-image-keeper monitor: checks that images in use are still available.",
)

if __name__ == "__main__":
    main()
