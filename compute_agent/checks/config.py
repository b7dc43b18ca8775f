"""Were the configuration files read, and does every option have a valid value?

oslo.config validates a value (type, choices, ranges) only when it is read,
so a typo like ``compute_driver = xen`` would otherwise surface only when the
agent reaches that code. Reading every registered option finds them all now.
"""

from __future__ import annotations

from oslo_config import cfg

from compute_agent.checks import Result, failure, first_line, success, warning

NAME = "config"

VALUE_ERRORS = (
    cfg.ConfigFileValueError,
    cfg.RequiredOptError,
    cfg.TemplateSubstitutionError,
    ValueError,
)


def unreadable(exc: Exception) -> Result:
    """The line for an exception oslo.config raised while reading the files."""
    if isinstance(exc, cfg.ConfigFilesPermissionDeniedError):
        return failure(NAME, f"permission denied reading {', '.join(exc.config_files)}")
    if isinstance(exc, cfg.ConfigFilesNotFoundError):
        return failure(NAME, f"cannot read {', '.join(exc.config_files)} (missing or not a file)")
    if isinstance(exc, cfg.ConfigFileParseError):
        return failure(NAME, f"{exc.config_file} is not valid INI: {exc.msg}")
    if isinstance(exc, cfg.ConfigDirNotFoundError):
        return failure(NAME, f"configuration directory {exc.config_dir} does not exist")
    if isinstance(exc, OSError) and exc.filename:
        return failure(NAME, f"cannot read {exc.filename}: {exc.strerror}")
    return failure(NAME, f"cannot read the configuration: {first_line(exc)}")


def check(conf: cfg.ConfigOpts) -> Result:
    problems = list(_invalid_values(conf))
    files = list(conf.config_file or [])
    if conf.config_dir:
        files.append(conf.config_dir + "/*.conf")
    if problems:
        return failure(NAME, "invalid values: " + "; ".join(problems))
    if not files:
        return warning(NAME, "no configuration file found; checking built-in defaults "
                             "(pass --config-file)")
    return success(NAME, "read " + ", ".join(files))


def _invalid_values(conf: cfg.ConfigOpts):
    for name in sorted(conf):
        value = _read(conf, name)
        if isinstance(value, str):
            yield f"[DEFAULT] {name}: {value}"
        elif isinstance(value, cfg.ConfigOpts.GroupAttr):
            for opt in sorted(value):
                problem = _read(value, opt)
                if isinstance(problem, str):
                    yield f"[{name}] {opt}: {problem}"


def _read(container, name: str):
    """The GroupAttr for a group, None for a good option, a reason for a bad one."""
    try:
        value = container[name]
    except VALUE_ERRORS as exc:
        return _reason(exc)
    return value if isinstance(value, cfg.ConfigOpts.GroupAttr) else None


def _reason(exc: Exception) -> str:
    # oslo.config's message names the file and the rejected value; keep the
    # part after "is not valid:" (it is about the value's form, never the secret
    # of a StrOpt, which has no form to reject).
    text = first_line(exc)
    marker = "is not valid:"
    return text.split(marker, 1)[1].strip() if marker in text else text
