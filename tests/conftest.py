# tests/ is deliberately not a package: the mmrazor and mmsegmentation wheels install a top-level
# package named `tests`. pytest puts each test folder on sys.path (rootdir-relative imports).
import diffkd_mm  # noqa: F401  (mmrazor stand-in + registrations before any test imports mmrazor)
