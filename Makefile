# The two commands of the README: `make run` (the main job) and `make test` (the tests).
.PHONY: bootstrap run test lint demo

bootstrap:
	@scripts/bootstrap

run: bootstrap
	.venv/bin/wschaos run

demo: bootstrap
	.venv/bin/python -m monitor --demo

test: bootstrap
	scripts/test

lint: bootstrap
	.venv/bin/ruff check .
