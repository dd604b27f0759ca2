from instantvir_cli.cli import app

app(prog_name="vir")
