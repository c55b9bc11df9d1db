"""``convmon solana`` commands: inspect the signature queues and requeue given-up signatures
(e.g. after raising ``max_supported_transaction_version`` following -32015 errors).

No postponed annotations here: typer reads the option types of the nested commands at run
time, and they come from lazy imports (the core CLI is imported only when commands register).
"""

import typer

from convmon.collectors.solana.sigqueue import SignatureQueue

COLLECTORS = ("depin", "depin_supply", "stablecoins_solana")


def register(app: typer.Typer) -> None:
    from convmon.monitor.app import open_runtime
    from convmon.monitor.cli import ConfigOption, console, load_or_exit, run_async

    group = typer.Typer(help="Solana collectors: signature queues.", no_args_is_help=True)

    @group.command("queues")
    def queues(config: ConfigOption = None) -> None:
        """Show pending and failed signatures per Solana collector."""
        loaded = load_or_exit(config)

        async def show() -> None:
            async with open_runtime(loaded) as runtime:
                for name in COLLECTORS:
                    queue = SignatureQueue(runtime.redis, runtime.keys, name)
                    pending, failed = await queue.depth(), await queue.failed()
                    console.print(f"{name}: pending {pending}, failed {failed}")

        run_async(show)

    @group.command("requeue-failed")
    def requeue_failed(config: ConfigOption = None) -> None:
        """Put given-up signatures back into their queues."""
        loaded = load_or_exit(config)

        async def requeue() -> None:
            async with open_runtime(loaded) as runtime:
                for name in COLLECTORS:
                    queue = SignatureQueue(runtime.redis, runtime.keys, name)
                    console.print(f"{name}: requeued {await queue.requeue_failed()}")

        run_async(requeue)

    app.add_typer(group, name="solana")
