"""The tests' password hasher: Django's PBKDF2 with one iteration instead of a million.

Users are made in nearly every test (the `users` fixture: three per test), and at Django's
cost of some 0.25 s a hash that was a quarter of the suite's time. The hash keeps the
"pbkdf2_sha256" name and records its iteration count, so a worker, a web server or `make
run` started by a test with the production settings checks these passwords too (and, as
Django does for an old hash, strengthens one on its first sign-in)."""

from django.contrib.auth.hashers import PBKDF2PasswordHasher


class QuickPBKDF2PasswordHasher(PBKDF2PasswordHasher):
    iterations = 1
