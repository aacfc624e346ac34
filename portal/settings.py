"""Settings for the portal, read once from the environment.

Every variable is documented in README.md ("Configuration"). A bad value stops the portal at
start with a message naming the variable (see portal/env.py).
"""

import logging
import os
from datetime import timedelta
from pathlib import Path

from portal import directory_settings
from portal.env import (
    env_audit_checkpoint_key,
    env_bool,
    env_choice,
    env_database,
    env_float,
    env_int,
    env_list,
    env_networks,
    env_origins,
    env_proxy_ssl_header,
    env_redis_url,
    env_token,
    secret_key,
)

BASE_DIR = Path(__file__).resolve().parent.parent
DATA_DIR = Path(os.environ.get("PORTAL_DATA_DIR") or BASE_DIR / "data").resolve()

DEBUG = env_bool("DEBUG", True)
SECRET_KEY = secret_key("SECRET_KEY", DEBUG, DATA_DIR)
ALLOWED_HOSTS = env_list("ALLOWED_HOSTS", ["127.0.0.1", "localhost", "[::1]"])

INSTALLED_APPS = [
    "django.contrib.admin",
    "django.contrib.auth",
    "django.contrib.contenttypes",
    "django.contrib.sessions",
    "django.contrib.messages",
    "django.contrib.staticfiles",
    "django.contrib.humanize",
    "django_htmx",
    "axes",
    "django_rq",
    "template_partials",
    "rest_framework",
    "drf_spectacular",
    "drf_spectacular_sidecar",
    "portal",
    "pools",
    "composer",
    "audit",
]

MIDDLEWARE = [
    # First: every response has an X-Request-ID, every log line of the request its id.
    "portal.middleware.RequestIdMiddleware",
    "django.middleware.security.SecurityMiddleware",
    # Static files straight from STATIC_ROOT (`make serve`), before sessions and the rest.
    "whitenoise.middleware.WhiteNoiseMiddleware",
    # Early, so its header also goes on responses made by the middleware below it.
    "portal.security.ContentSecurityPolicyMiddleware",
    "django.contrib.sessions.middleware.SessionMiddleware",
    "django.middleware.common.CommonMiddleware",
    "django.middleware.csrf.CsrfViewMiddleware",
    "django.contrib.auth.middleware.AuthenticationMiddleware",
    # The user's own time zone, from the session (no query).
    "portal.time_zones.UserTimeZoneMiddleware",
    # Before any view (and sign-in) reads the request: a NUL byte is a 400, not a 500.
    "portal.middleware.RejectNulMiddleware",
    "django.contrib.auth.middleware.LoginRequiredMiddleware",
    "django.contrib.messages.middleware.MessageMiddleware",
    # The portal's 404 page under DEBUG too, rendered with the user and messages above.
    "portal.middleware.OwnNotFoundPageMiddleware",
    # Inside the messages: it tells the user when saved work could not be queued yet.
    "portal.middleware.QueueOutageMiddleware",
    "django.middleware.clickjacking.XFrameOptionsMiddleware",
    "django_htmx.middleware.HtmxMiddleware",
    # Last, as django-axes requires: it turns a locked-out sign-in into the lockout page.
    "axes.middleware.AxesMiddleware",
]

ROOT_URLCONF = "portal.urls"
WSGI_APPLICATION = "portal.wsgi.application"

TEMPLATES = [
    {
        "BACKEND": "django.template.backends.django.DjangoTemplates",
        "DIRS": [BASE_DIR / "templates"],
        "APP_DIRS": True,
        "OPTIONS": {
            "context_processors": [
                "django.template.context_processors.request",
                "django.contrib.auth.context_processors.auth",
                "django.contrib.messages.context_processors.messages",
                "portal.context_processors.roles",
            ],
            "builtins": [
                "portal.templatetags.portal_tags",
                "template_partials.templatetags.partials",
            ],
        },
    },
]

DATABASES = {
    "default": env_database("DATABASE_URL", f"sqlite:///{DATA_DIR / 'portal.sqlite3'}"),
}
DEFAULT_AUTO_FIELD = "django.db.models.BigAutoField"

# The embedded Redis (started by `make run`, or by the tests) listens on a socket in the data
# folder, so it never collides with a Redis already running on the machine.
REDIS_URL = env_redis_url("REDIS_URL", f"unix://{DATA_DIR / 'redis.sock'}")
RQ_QUEUES = {
    "default": {"URL": REDIS_URL, "DEFAULT_TIMEOUT": 3600},
    # Helpdesk-sized operations; every worker serves it first (composer/queue.py).
    "urgent": {"URL": REDIS_URL, "DEFAULT_TIMEOUT": 3600},
}
# Jobs are enqueued explicitly in transaction.on_commit (composer/queue.py), so django-rq must
# not defer them a second time.
# PortalWorker keeps one vCenter session per endpoint across its jobs (composer/worker.py).
RQ = {
    "DEFAULT_RESULT_TTL": 24 * 3600,
    "COMMIT_MODE": "auto",
    "WORKER_CLASS": "composer.worker.PortalWorker",
}

# Seconds between two runs of the reconciler (`manage.py runcron`, composer/cron.py).
RECONCILE_INTERVAL_SECONDS = env_int("RECONCILE_INTERVAL_SECONDS", 60, minimum=1)

# The simulator keeps its inventory in Redis so that the web process and every worker see the
# same hypervisor. SIMULATOR_REDIS_URL lets it live apart from the job queues.
SIMULATOR_REDIS_URL = env_redis_url("SIMULATOR_REDIS_URL", REDIS_URL)
# Seconds each simulated hypervisor step takes: enough to watch progress under `make run`;
# the tests set it to zero.
SIMULATOR_STEP_SECONDS = env_float("SIMULATOR_STEP_SECONDS", 1.0)

# Seconds between two polls of a live fragment (pool page, operation page).
POLL_SECONDS = env_int("POLL_SECONDS", 2, minimum=1)
# How often the dashboard asks whether anything changed while no work runs.
IDLE_POLL_SECONDS = env_int("IDLE_POLL_SECONDS", 30, minimum=1)

# AxesStandaloneBackend first: it refuses a locked-out user name + address before the password
# is even checked. It needs the request, which LoginView and the admin login pass;
# client.force_login in tests bypasses backends altogether.
AUTHENTICATION_BACKENDS = [
    "axes.backends.AxesStandaloneBackend",
    "django.contrib.auth.backends.ModelBackend",
]

# Directory sign-in (Active Directory / LDAP), on when LDAP_SERVER_URI is set: django-auth-ldap
# after axes (so lockouts hold for directory accounts too) and before the local accounts,
# which still sign in (portal/directory.py). from_environment() checks every LDAP_* variable
# and returns the AUTH_LDAP_* settings and LDAP_ROLE_GROUPS (role -> group DN).
LDAP_ROLE_GROUPS: dict[str, str] = {}
if directory_settings.enabled():
    globals().update(directory_settings.from_environment())
    AUTHENTICATION_BACKENDS.insert(1, directory_settings.BACKEND)

LOGIN_URL = "login"
LOGIN_REDIRECT_URL = "dashboard"
LOGOUT_REDIRECT_URL = "login"

AUTH_PASSWORD_VALIDATORS = [
    {"NAME": "django.contrib.auth.password_validation.UserAttributeSimilarityValidator"},
    {"NAME": "django.contrib.auth.password_validation.MinimumLengthValidator"},
    {"NAME": "django.contrib.auth.password_validation.CommonPasswordValidator"},
    {"NAME": "django.contrib.auth.password_validation.NumericPasswordValidator"},
]

LANGUAGE_CODE = "en-us"
# The server's time zone: what pages show until a user chooses their own (Preferences).
TIME_ZONE = os.environ.get("TIME_ZONE", "UTC")
USE_I18N = True
USE_TZ = True

STATIC_URL = "static/"
STATICFILES_DIRS = [BASE_DIR / "static"]
STATIC_ROOT = Path(os.environ.get("STATIC_ROOT") or BASE_DIR / "staticfiles")
# Without DEBUG (`make serve`), `collectstatic` writes each file under a name with its content's
# hash, plus gzipped copies, and WhiteNoise serves those with a ten-year Cache-Control: a new
# release has new names, so no browser keeps an old stylesheet. With DEBUG (`make run`, the
# tests) files keep their names and are found in the apps' folders on each request, so
# templates render without `collectstatic`.
STORAGES = {
    "default": {"BACKEND": "django.core.files.storage.FileSystemStorage"},
    "staticfiles": {
        "BACKEND": "django.contrib.staticfiles.storage.StaticFilesStorage"
        if DEBUG
        else "whitenoise.storage.CompressedManifestStaticFilesStorage"
    },
}
# Read from DEBUG as the environment sets it (pytest-django turns settings.DEBUG off later).
WHITENOISE_AUTOREFRESH = DEBUG
WHITENOISE_USE_FINDERS = DEBUG

# HTTPS. In production the portal runs behind a TLS-terminating proxy: TRUSTED_PROXY_SSL_HEADER
# names the header that proxy sets (and must strip from clients), so Django knows a request
# came in over HTTPS. `make check-deploy` (in CI) runs `check --deploy` against these.
SECURE_SSL_REDIRECT = env_bool("SECURE_SSL_REDIRECT", not DEBUG)
# Load balancers probe /healthz over plain HTTP, on the server's own port: a redirect to HTTPS
# would read as "down" (portal/health.py). It reveals nothing but which checks pass.
SECURE_REDIRECT_EXEMPT = [r"^healthz$"]
SECURE_PROXY_SSL_HEADER = env_proxy_ssl_header("TRUSTED_PROXY_SSL_HEADER")
SECURE_HSTS_SECONDS = env_int("SECURE_HSTS_SECONDS", 0 if DEBUG else 365 * 24 * 3600)
# Subdomains of the portal's own host only; a sibling site is not affected.
SECURE_HSTS_INCLUDE_SUBDOMAINS = env_bool("SECURE_HSTS_INCLUDE_SUBDOMAINS", True)
# Preloading is a decision for whoever owns the registrable domain (and impossible for a
# portal on an internal name), so it is opt-in and its deploy warning is silenced while off.
SECURE_HSTS_PRELOAD = env_bool("SECURE_HSTS_PRELOAD", False)
SILENCED_SYSTEM_CHECKS = [] if SECURE_HSTS_PRELOAD else ["security.W021"]
SECURE_CONTENT_TYPE_NOSNIFF = True
SECURE_REFERRER_POLICY = "same-origin"
X_FRAME_OPTIONS = "DENY"
SESSION_COOKIE_SECURE = not DEBUG
CSRF_COOKIE_SECURE = not DEBUG
SESSION_COOKIE_HTTPONLY = True
CSRF_TRUSTED_ORIGINS = env_origins("CSRF_TRUSTED_ORIGINS")

# Login throttling (django-axes): after AXES_FAILURE_LIMIT failed sign-ins for one user name
# from one address, that pair is refused for AXES_COOLOFF_MINUTES. A lockout is lifted early
# with `manage.py axes_reset_username NAME` or in the Django admin (Axes > Access attempts).
AXES_FAILURE_LIMIT = env_int("AXES_FAILURE_LIMIT", 5, minimum=1)
AXES_COOLOFF_TIME = timedelta(minutes=env_int("AXES_COOLOFF_MINUTES", 15, minimum=1))
AXES_LOCKOUT_PARAMETERS = [["username", "ip_address"]]
AXES_RESET_ON_SUCCESS = True
# Attempts during a lockout do not restart it, so "try again in N minutes" holds.
AXES_RESET_COOL_OFF_ON_FAILURE_DURING_LOCKOUT = False
AXES_LOCKOUT_CALLABLE = "portal.security.lockout_response"
AXES_VERBOSE = False  # no version banner from every manage.py command

# The audit log's checkpoints (`manage.py verify_audit`, portal/audit.py): signed with this
# key, which the database must not hold; give it only to the job that runs verify_audit.
# AUDIT_CHECKPOINT_FILE is where that job appends them (its --checkpoints default).
AUDIT_CHECKPOINT_KEY, AUDIT_CHECKPOINT_KEY_FILE = env_audit_checkpoint_key(
    "AUDIT_CHECKPOINT_KEY", "AUDIT_CHECKPOINT_KEY_FILE", min_length=32
)
AUDIT_CHECKPOINT_FILE = os.environ.get("AUDIT_CHECKPOINT_FILE", "").strip()

# Logs: today's plain lines, or one JSON object a line for a log collector (README, "Logs").
# Either way each line carries the request id, user, operation and desktop ids it is about
# (portal/logs.py). Workers and the cron process are manage.py commands: same format.
LOG_FORMAT = env_choice("LOG_FORMAT", "plain", ["plain", "json"])
if LOG_FORMAT == "json":
    # Python's warnings through the log too, as JSON lines, instead of raw text on stderr.
    logging.captureWarnings(True)
LOGGING = {
    "version": 1,
    "disable_existing_loggers": False,
    "formatters": {
        "plain": {"()": "portal.logs.PlainFormatter"},
        "json": {"()": "portal.logs.JsonFormatter"},
    },
    "handlers": {
        "console": {
            "class": "logging.StreamHandler",
            "formatter": LOG_FORMAT,
            "filters": ["quiet_security"],
        }
    },
    "filters": {
        "quiet_denials": {"()": "portal.log_filters.QuietDenials"},
        "quiet_security": {"()": "portal.log_filters.QuietSecurity"},
        "failed_requests_only": {"()": "portal.log_filters.FailedRequestsOnly"},
    },
    "root": {"handlers": ["console"], "level": os.environ.get("LOG_LEVEL", "INFO")},
    "loggers": {
        "rq.worker": {"level": "WARNING"},
        # axes logs every sign-in at INFO; failures and lockouts (WARNING) are audited too.
        "axes": {"level": "WARNING"},
        # Its WARNING on a directory error dumps the exception's dictionary; portal.directory
        # logs one readable line instead.
        "django_auth_ldap": {"level": "ERROR"},
        # A denial is one INFO line; the dev server's line per request (polls every 2 s)
        # only for failures (portal/log_filters.py).
        "django.request": {"filters": ["quiet_denials"]},
        # Django's defaults print its lines a second time, unformatted, under DEBUG, and
        # the dev server's past every handler: here they go through ours, once.
        "django": {"handlers": []},
        "django.server": {
            "handlers": ["console"],
            "propagate": False,
            "filters": ["failed_requests_only"],
        },
    },
}

# Sessions reported by the desktops' agents (vCenter cannot tell who is logged on): a desktop
# whose agent has not reported for this long has an "unknown" session (pools/sessions.py),
# which maintenance under the "wait" policy treats as logged on. Agents heartbeat more often.
AGENT_SESSION_TIMEOUT_SECONDS = env_int("AGENT_SESSION_TIMEOUT_SECONDS", 900, minimum=30)

# The automation API (/api/v1/, portal/api/): Django REST framework over the same services as
# the pages. A script signs in with a personal token (portal.models.ApiToken, "Authorization:
# Bearer ..."); the browser's session works too, with its CSRF check. Errors are problem+json
# (RFC 9457, portal/api/problems.py).
REST_FRAMEWORK = {
    "DEFAULT_AUTHENTICATION_CLASSES": [
        "portal.api.authentication.BearerTokenAuthentication",
        "rest_framework.authentication.SessionAuthentication",
    ],
    "DEFAULT_PERMISSION_CLASSES": ["rest_framework.permissions.IsAuthenticated"],
    "DEFAULT_RENDERER_CLASSES": ["rest_framework.renderers.JSONRenderer"],
    "DEFAULT_PARSER_CLASSES": ["rest_framework.parsers.JSONParser"],
    "DEFAULT_PAGINATION_CLASS": "portal.api.pagination.CursorPages",
    "DEFAULT_SCHEMA_CLASS": "drf_spectacular.openapi.AutoSchema",
    "EXCEPTION_HANDLER": "portal.api.problems.exception_handler",
    "UNAUTHENTICATED_USER": "django.contrib.auth.models.AnonymousUser",
    # Per token (or session user): portal/api/throttles.py, counted in the "throttle" cache.
    "DEFAULT_THROTTLE_CLASSES": ["portal.api.throttles.PerTokenRateThrottle"],
    "DEFAULT_THROTTLE_RATES": {
        "user": os.environ.get("API_RATE_USER", "1200/minute"),
        "agent": os.environ.get("API_RATE_AGENT", "120/minute"),
    },
    "PAGE_SIZE": 100,
}
# The default cache stays in each process's memory (portal/live.py). The API's rate limits
# need counts every gunicorn worker shares: the "throttle" cache is Redis. (Never clear() it:
# that empties the whole Redis database, job queues included.)
CACHES = {
    "default": {"BACKEND": "django.core.cache.backends.locmem.LocMemCache"},
    "throttle": {
        "BACKEND": "django.core.cache.backends.redis.RedisCache",
        "LOCATION": REDIS_URL,
        "KEY_PREFIX": "throttle",
        # A Redis outage must not hold up every API call (the limit is then not applied).
        "OPTIONS": {"socket_connect_timeout": 1, "socket_timeout": 1},
    },
}
SPECTACULAR_SETTINGS = {
    "TITLE": "Linked-clone portal API",
    "DESCRIPTION": "Pools of linked-clone desktops: inventory, maintenance operations, audit.",
    "VERSION": "1",
    "SERVE_INCLUDE_SCHEMA": False,
    "SCHEMA_PATH_PREFIX": r"/api/v1",
    # The reference page's scripts come from drf-spectacular-sidecar's static files: no CDN.
    "SWAGGER_UI_DIST": "SIDECAR",
    "SWAGGER_UI_FAVICON_HREF": "SIDECAR",
    "REDOC_DIST": "SIDECAR",
    "COMPONENT_SPLIT_REQUEST": True,
    "POSTPROCESSING_HOOKS": [
        "drf_spectacular.hooks.postprocess_schema_enums",
        "portal.api.schema.add_problem_responses",
    ],
    # Several models have a `status`: each its own enum name in the schema.
    "ENUM_NAME_OVERRIDES": {
        "OperationStatusEnum": "composer.models.Operation.Status",
        "DesktopTaskStatusEnum": "composer.models.DesktopTask.Status",
        "ReplicaStatusEnum": "pools.models.Replica.Status",
        "WebhookDeliveryStatusEnum": "composer.models.WebhookDelivery.Status",
        "TokenStatusEnum": ["active", "expired", "revoked"],  # portal/api/tokens.py
        # Every kind (operations as they are), and those a pool's operations route starts.
        "OperationKindEnum": "composer.kinds.choices",
        "PoolOperationKindEnum": "portal.api.schema.pool_operation_kinds",
    },
}

# Webhooks (composer/webhooks/): how long a receiver has to answer, how often deliveries
# whose job was lost are queued again (composer/cron.py), and whether plain http to this
# machine is accepted (a local receiver; DEBUG accepts it too). https otherwise, always.
WEBHOOK_TIMEOUT_SECONDS = env_float("WEBHOOK_TIMEOUT_SECONDS", 5.0, minimum=0.1)
WEBHOOK_REQUEUE_INTERVAL_SECONDS = env_int("WEBHOOK_REQUEUE_INTERVAL_SECONDS", 30, minimum=1)
WEBHOOKS_ALLOW_HTTP = env_bool("WEBHOOKS_ALLOW_HTTP", False)

# /metrics (portal/metrics.py) answers only a scraper that sends METRICS_TOKEN as a bearer
# token and/or comes from an address in METRICS_ALLOW (every one configured must hold); with
# neither set it is refused.
METRICS_TOKEN = env_token("METRICS_TOKEN", min_length=32)
METRICS_ALLOW = env_networks("METRICS_ALLOW")
