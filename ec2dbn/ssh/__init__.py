"""The one SSH connection (pinned host key), file transfer, detached jobs and log following, the
bootstrap runner, bounded remote output. Knows no EC2 API and no stack: it is handed addresses and keys."""
