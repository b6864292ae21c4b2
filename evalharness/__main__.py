from evalharness.cli import app

app()
