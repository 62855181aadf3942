# Goodman Live: `make demo` runs the system on this machine, `make test` tests it.
# Both set themselves up: a .venv from the pinned requirements, and Debian's
# chromium for the browser tests.
PYTHON ?= python3
VENV := .venv
PY := $(VENV)/bin/python
STAMP := $(VENV)/.installed
SUDO := $(shell [ "$$(id -u)" = 0 ] || echo sudo)

.PHONY: demo test venv chromium replay-real bench clean sam package deploy publish

# The SAM CLI in a venv of its own: it pins a boto3 and cfn-lint of its own.
SAM_VENV := .venv-sam
SAM := $(SAM_VENV)/bin/sam
SAM_STAMP := $(SAM_VENV)/.installed
STAGE ?= dev
STACK ?= goodman-live-$(STAGE)
PACKAGE := build/package

$(STAMP): requirements.txt constraints.txt
	$(PYTHON) -m venv $(VENV)
	$(PY) -m pip install --quiet --upgrade pip
	$(PY) -m pip install --quiet -r requirements.txt
	touch $(STAMP)

venv: $(STAMP)

$(SAM_STAMP): infra/sam-requirements.txt
	$(PYTHON) -m venv $(SAM_VENV)
	$(SAM_VENV)/bin/python -m pip install --quiet --upgrade pip
	$(SAM_VENV)/bin/python -m pip install --quiet -r infra/sam-requirements.txt
	touch $(SAM_STAMP)

sam: $(SAM_STAMP)

# The browser tests drive Debian's chromium through Playwright (no browser download).
chromium:
	@command -v chromium >/dev/null 2>&1 || { \
	  $(SUDO) apt-get update -q && $(SUDO) apt-get install -y -q --no-install-recommends chromium fonts-dejavu-core; }

demo: $(STAMP)
	$(PY) -m infra.local demo

# The three set-ups are independent: made side by side, they take the time of the longest.
test:
	$(MAKE) -j3 --no-print-directory $(STAMP) $(SAM_STAMP) chromium
	GOLIVE_REQUIRE_SAM=1 $(PY) -m pytest

# Every artefact AWS runs and the packaged template, without an AWS account.
package: $(STAMP)
	$(PY) -m infra.package --stage $(if $(filter prod,$(STAGE)),prod,dev) --out $(PACKAGE)

# The whole system into the AWS account of the current credentials (README: Deploy).
# The key that signs page tokens is the stack's own secret (Secrets Manager), made once.
deploy: package $(SAM_STAMP)
	SAM_CLI_TELEMETRY=0 $(SAM) deploy --template-file $(PACKAGE)/template.json --stack-name $(STACK) \
	  --resolve-s3 --capabilities CAPABILITY_IAM CAPABILITY_AUTO_EXPAND --no-fail-on-empty-changeset \
	  --tags project=goodman-live stage=$(STAGE) \
	  --parameter-overrides Stage=$(STAGE) DomainName=$(DOMAIN) CertificateArn=$(CERTIFICATE_ARN) \
	    AlarmEmail=$(ALARM_EMAIL) ProprietaryDays=$(or $(PROPRIETARY_DAYS),365)
	$(PY) -m infra.publish --stack $(STACK)

# The page alone, built for a deployed stack's API and put behind its CloudFront.
publish: $(STAMP)
	$(PY) -m infra.publish --stack $(STACK)

# Replay the real calibration afternoon (needs ../shared).
replay-real: $(STAMP)
	$(PY) -m infra.local replay ../shared/data/real/jsreding_930_20180203 --out out/jsreding_930_20180203

bench: $(STAMP)
	$(PY) benchmarks/latency.py
	$(PY) benchmarks/ccd.py

clean:
	rm -rf $(VENV) $(SAM_VENV) build static_site/build .demo out .pytest_cache .hypothesis
