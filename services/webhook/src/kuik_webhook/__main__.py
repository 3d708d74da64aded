"""`kuik-webhook`: routes Pod images at admission to an available alternative."""

from kuik_webhook.service import run
from kuikcore.service import ConfigOption, service_command

main = service_command(
    "webhook",
    run,
    options=[
        ConfigOption("--listen", "webhook.listen", "HOST:PORT of the HTTPS admission endpoint."),
        ConfigOption("--tls-cert", "webhook.tlsCert", "Serving certificate (PEM)."),
        ConfigOption(
            "--tls-key", "webhook.tlsKey", "Private key of the serving certificate (PEM)."
        ),
    ],
    help="kube-image-keeper webhook: routes Pod images at admission.",
)

if __name__ == "__main__":
    main()
