# The two commands a newcomer needs: `make run` and `make test`.
PYTHON ?= python3.11
VENV := .venv
PY := $(VENV)/bin/python
STAMP := $(VENV)/.installed

.PHONY: run serve test lint check-deploy install clean-data vcsim screenshots

$(PY):
	$(PYTHON) -m venv $(VENV) || python3 -m venv $(VENV)

# Reinstall when pyproject.toml changes. Directory sign-in (the "ldap" extra) only when
# python-ldap can build: Debian's libldap2-dev and libsasl2-dev give /usr/include/ldap.h.
$(STAMP): pyproject.toml | $(PY)
	$(PY) -m pip install --quiet --upgrade pip
	@if [ -e /usr/include/ldap.h ]; then \
		echo '$(PY) -m pip install --quiet -e ".[dev,ldap]"'; \
		$(PY) -m pip install --quiet -e ".[dev,ldap]"; \
	else \
		echo "Directory sign-in (LDAP) left out: it needs Debian's libldap2-dev and libsasl2-dev (then: rm $(STAMP); make install)."; \
		$(PY) -m pip install --quiet -e ".[dev]"; \
	fi
	touch $(STAMP)

install: $(STAMP)

# `make run VCSIM=1` adds govmomi's vCenter simulator and a pool on the vSphere driver.
run: $(STAMP)
	$(PY) manage.py runportal $(if $(filter-out 0,$(VCSIM)),--vcsim)

# Production's web server (README, "The web server: make serve"): DEBUG off, everything else
# from the environment (DATABASE_URL, REDIS_URL, SECRET_KEY, ALLOWED_HOSTS...). It starts no
# Redis and no workers: in production they are services of their own (deploy/).
serve: $(STAMP)
	DEBUG=false $(PY) manage.py migrate --noinput
	DEBUG=false $(PY) manage.py collectstatic --noinput --verbosity 0
	DEBUG=false exec $(VENV)/bin/gunicorn --config deploy/gunicorn.conf.py portal.wsgi:application

# govmomi's vCenter simulator for the vSphere tests (the tests build it themselves too).
vcsim:
	tests/vsphere/build_vcsim.sh

# PYTEST_ARGS narrows the run, e.g. PYTEST_ARGS=tests/vsphere.
test: $(STAMP)
	$(PY) -m pytest $(PYTEST_ARGS)

# Retake README's screenshots (docs/screenshots/) with the browser tests; `make test` never does.
screenshots: $(STAMP)
	SCREENSHOTS=1 $(PY) -m pytest tests/e2e

lint: $(STAMP)
	$(VENV)/bin/ruff check .
	$(VENV)/bin/ruff format --check .
	$(VENV)/bin/lint-imports
	$(PY) manage.py makemigrations --check --dry-run

# `check --deploy` under production settings, with a throwaway secret key: any warning fails.
check-deploy: $(STAMP)
	DEBUG=false ALLOWED_HOSTS=portal.example \
	SECRET_KEY="$$($(PY) -c 'import secrets; print(secrets.token_urlsafe(50))')" \
	$(PY) manage.py check --deploy --fail-level WARNING

clean-data:
	rm -rf data
