//! The settings as operators see them: defaults, refusals, secrets, and the documentation.

use super::*;

const SECRET: &str = "0123456789abcdef0123456789abcdef-test";

fn vars(pairs: &[(&str, &str)]) -> HashMap<String, String> {
    let mut m: HashMap<String, String> = [
        ("DATABASE_URL", "postgresql://agentidp@localhost/agentidp"),
        ("JWT_HS256_SECRET", SECRET),
    ]
    .iter()
    .map(|(k, v)| (k.to_string(), v.to_string()))
    .collect();
    for (k, v) in pairs {
        m.insert(k.to_string(), v.to_string());
    }
    m
}

fn err(pairs: &[(&str, &str)]) -> ConfigError {
    Config::from_map(&vars(pairs)).unwrap_err()
}

#[test]
fn defaults() {
    let c = Config::from_map(&vars(&[])).unwrap();
    assert_eq!(c.bind.port(), 3000);
    assert!(!c.production);
    assert!(matches!(c.key_source, KeySourceConfig::None));
    assert_eq!(c.audit_rate_limit_per_minute, 30);
    assert_eq!(c.controls_rate_limit_per_minute, 120);
    assert_eq!(c.credential_expiry_warning_days, 7);
    assert_eq!(c.trusted_proxy_hops, 0);
    assert_eq!(c.schedules.secrets_rotation.source(), HOURLY);
    assert_eq!(c.controls_refresh, Duration::from_secs(5));
}

#[test]
fn vault_defaults_to_the_documented_path_and_field() {
    let c = Config::from_map(&vars(&[
        ("VAULT_ADDR", "http://127.0.0.1:8200"),
        ("VAULT_TOKEN", "root"),
    ]))
    .unwrap();
    let KeySourceConfig::Vault(v) = c.key_source else {
        panic!("expected Vault");
    };
    assert_eq!(v.mount, "secret");
    assert_eq!(v.path, "agentidp/encryption-key");
    assert_eq!(v.field, "encryptionKey");
    assert_eq!(v.old_keys_field, "previousEncryptionKey");
    assert_eq!(v.display_path(), DEFAULT_VAULT_PATH);
}

#[test]
fn bad_settings_name_the_variable() {
    for (pairs, var) in [
        (vec![("PORT", "http")], "PORT"),
        (vec![("PORT", "70000")], "PORT"),
        (vec![("BIND_ADDRESS", "everywhere")], "BIND_ADDRESS"),
        (
            vec![("AGENTIDP_PRODUCTION", "maybe")],
            "AGENTIDP_PRODUCTION",
        ),
        (vec![("DATABASE_URL", "")], "DATABASE_URL"),
        (
            vec![("DATABASE_URL", "postgresql://h/db?sslmode=sometimes")],
            "DATABASE_URL",
        ),
        (vec![("VAULT_ADDR", "http://v:8200")], "VAULT_TOKEN"),
        (vec![("VAULT_TOKEN", "t")], "VAULT_ADDR"),
        (
            vec![("VAULT_ADDR", "not a url"), ("VAULT_TOKEN", "t")],
            "VAULT_ADDR",
        ),
        (
            vec![
                ("VAULT_ADDR", "http://v"),
                ("VAULT_TOKEN", "t"),
                ("ENCRYPTION_KEY_VAULT_PATH", "secret"),
            ],
            "ENCRYPTION_KEY_VAULT_PATH",
        ),
        (
            vec![
                ("VAULT_ADDR", "http://v"),
                ("VAULT_TOKEN", "t"),
                ("ENCRYPTION_KEY_VAULT_FIELD", "key"),
                ("ENCRYPTION_OLD_KEYS_VAULT_FIELD", "key"),
            ],
            "ENCRYPTION_OLD_KEYS_VAULT_FIELD",
        ),
        (vec![("JWT_HS256_SECRET", "")], "JWT_HS256_SECRET"),
        (vec![("JWT_HS256_SECRET", "short")], "JWT_HS256_SECRET"),
        (
            vec![("JWT_RS256_PUBLIC_KEY_FILE", "/nonexistent/key.pem")],
            "JWT_RS256_PUBLIC_KEY_FILE",
        ),
        (
            vec![("RATE_LIMIT_AUDIT_VERIFY_PER_MINUTE", "0")],
            "RATE_LIMIT_AUDIT_VERIFY_PER_MINUTE",
        ),
        (
            vec![("RATE_LIMIT_COMPLIANCE_CONTROLS_PER_MINUTE", "-1")],
            "RATE_LIMIT_COMPLIANCE_CONTROLS_PER_MINUTE",
        ),
        (
            vec![("JOB_SECRETS_ROTATION_SCHEDULE", "@sometimes")],
            "JOB_SECRETS_ROTATION_SCHEDULE",
        ),
        (
            vec![("KEY_REFRESH_SCHEDULE", "* * *")],
            "KEY_REFRESH_SCHEDULE",
        ),
        (
            vec![("WEBHOOK_DEAD_LETTER_THRESHOLD", "-5")],
            "WEBHOOK_DEAD_LETTER_THRESHOLD",
        ),
        (vec![("PUBLIC_HOST", "exa mple.com")], "PUBLIC_HOST"),
        (vec![("TRUSTED_PROXY_HOPS", "two")], "TRUSTED_PROXY_HOPS"),
    ] {
        let e = err(&pairs);
        assert_eq!(e.var, var, "for {pairs:?}: {e}");
        assert!(e.to_string().contains(var), "{e}");
    }
}

/// Without an HS256 secret, so that the PEM itself is what is refused (with one, the
/// combination is refused first: see below).
fn rs256_err(pairs: &[(&str, &str)]) -> ConfigError {
    let mut v = vars(pairs);
    v.remove("JWT_HS256_SECRET");
    Config::from_map(&v).unwrap_err()
}

#[test]
fn an_invalid_rs256_pem_is_refused_by_the_variable_it_came_from() {
    let e = rs256_err(&[("JWT_RS256_PUBLIC_KEY", "not pem")]);
    assert_eq!(
        (e.var.as_str(), e.reason.as_str()),
        (
            "JWT_RS256_PUBLIC_KEY",
            "not a PEM-encoded RSA public key: InvalidKeyFormat"
        )
    );
    let dir = std::env::temp_dir().join(format!("agentidp-pem-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    let file = dir.join("jwt.pem");
    std::fs::write(
        &file,
        "-----BEGIN PUBLIC KEY-----\nbm90IGEga2V5\n-----END PUBLIC KEY-----\n",
    )
    .unwrap();
    let e = rs256_err(&[("JWT_RS256_PUBLIC_KEY_FILE", file.to_str().unwrap())]);
    std::fs::remove_dir_all(&dir).unwrap();
    assert_eq!(
        (e.var.as_str(), e.reason.as_str()),
        (
            "JWT_RS256_PUBLIC_KEY_FILE",
            "not a PEM-encoded RSA public key: InvalidKeyFormat"
        )
    );
    // The fixture the API tests verify tokens with is accepted.
    let good = include_str!("../../tests/fixtures/test-rs256-public.pem");
    let mut v = vars(&[("JWT_RS256_PUBLIC_KEY", good)]);
    v.remove("JWT_HS256_SECRET");
    assert!(Config::from_map(&v).is_ok());
}

#[test]
fn rs256_key_with_hs256_secret_is_ambiguous() {
    let mut v = vars(&[("JWT_RS256_PUBLIC_KEY", "x")]);
    v.insert("JWT_HS256_SECRET".into(), SECRET.into());
    // The PEM is not checked when the combination is already wrong.
    assert_eq!(Config::from_map(&v).unwrap_err().var, "JWT_HS256_SECRET");
}

#[test]
fn secrets_never_appear_in_errors_or_debug() {
    let e = err(&[
        ("VAULT_ADDR", "ftp://v"),
        ("VAULT_TOKEN", "s.SuperSecretToken"),
    ]);
    assert!(!e.to_string().contains("SuperSecretToken"));
    let c = Config::from_map(&vars(&[
        ("VAULT_ADDR", "http://v:8200"),
        ("VAULT_TOKEN", "s.SuperSecretToken"),
        ("DATABASE_URL", "postgresql://u:hunter2pass@h/db"),
    ]))
    .unwrap();
    let debug = format!("{c:?}");
    assert!(!debug.contains("SuperSecretToken"), "{debug}");
    assert!(!debug.contains("hunter2pass"), "{debug}");
    assert!(!debug.contains(SECRET), "{debug}");
}

#[test]
fn production_switch() {
    let p = |pairs: &[(&str, &str)]| {
        Config::from_map(&vars(&[&[("ENCRYPTION_KEY_FILE", "/k")], pairs].concat()))
            .map(|c| c.production)
    };
    assert!(!p(&[]).unwrap());
    assert_eq!(
        p(&[("NODE_ENV", "production")]).unwrap_err().var,
        "DATABASE_URL"
    );
    assert!(p(&[
        ("NODE_ENV", "production"),
        ("DATABASE_URL", "postgresql://h/db?sslmode=require")
    ])
    .unwrap());
    assert!(!p(&[("NODE_ENV", "production"), ("AGENTIDP_PRODUCTION", "false")]).unwrap());
    // A Unix socket never leaves the host, so TLS is not demanded there.
    assert!(p(&[
        ("AGENTIDP_PRODUCTION", "1"),
        ("DATABASE_URL", "host=/var/run/postgresql dbname=agentidp")
    ])
    .unwrap());
}

#[test]
fn production_demands_a_key_source_and_https_vault() {
    let base = [
        ("AGENTIDP_PRODUCTION", "true"),
        ("DATABASE_URL", "postgresql://h/db?sslmode=require"),
    ];
    assert_eq!(err(&base).var, "VAULT_ADDR");
    let e = err(&[
        &base[..],
        &[("VAULT_ADDR", "http://v:8200"), ("VAULT_TOKEN", "t")],
    ]
    .concat());
    assert_eq!(e.var, "VAULT_ADDR");
    assert!(Config::from_map(&vars(
        &[
            &base[..],
            &[("VAULT_ADDR", "https://v:8200"), ("VAULT_TOKEN", "t")]
        ]
        .concat()
    ))
    .is_ok());
}

#[test]
fn blank_is_unset_and_values_are_trimmed() {
    let c = Config::from_map(&vars(&[
        ("PORT", "  "),
        ("DB_POOL_SIZE", ""),
        ("KEY_REFRESH_SCHEDULE", ""),
        ("VAULT_ADDR", ""),
        ("VAULT_TOKEN", " "),
        ("TRUSTED_PROXY_HOPS", " 2 "),
    ]))
    .unwrap();
    assert_eq!(c.bind.port(), DEFAULT_PORT);
    assert_eq!(c.db_pool_size, 8);
    assert_eq!(c.schedules.key_refresh.source(), EVERY_FIVE_MINUTES);
    assert!(matches!(c.key_source, KeySourceConfig::None));
    assert_eq!(c.trusted_proxy_hops, 2);
    // A value that looks like a flag is still the variable's value.
    assert_eq!(
        err(&[("DB_POOL_SIZE", "-3")]).to_string(),
        "invalid configuration: DB_POOL_SIZE: expected a positive integer, got \"-3\""
    );
}

#[test]
fn the_command_line_wins_over_the_environment() {
    let s = Settings::parse_env(&vars(&[("PORT", "3001")]), ["sidecar", "--port", "3002"]).unwrap();
    assert_eq!(s.resolve().unwrap().bind.port(), 3002);
    let Err(LoadError::Invalid(e)) = Settings::parse_env(&vars(&[]), ["sidecar", "--port=x"])
    else {
        panic!("expected a refused value");
    };
    assert_eq!(e.var, "PORT");
    assert!(matches!(
        Settings::parse_env(&vars(&[]), ["sidecar", "--no-such-flag"]),
        Err(LoadError::Usage(_))
    ));
}

#[test]
fn settings_debug_hides_the_secrets() {
    let v = vars(&[
        ("VAULT_ADDR", "http://v:8200"),
        ("VAULT_TOKEN", "s.SuperSecretToken"),
        ("DATABASE_URL", "postgresql://u:hunter2pass@h/db"),
    ]);
    let debug = format!("{:?}", Settings::parse_env(&v, ["sidecar"]).unwrap());
    assert!(!debug.contains("SuperSecretToken"), "{debug}");
    assert!(!debug.contains("hunter2pass"), "{debug}");
    assert!(!debug.contains(SECRET), "{debug}");
}

/// (variable, default as `--help` shows it) of every setting clap declares.
fn declared() -> Vec<(String, Option<String>)> {
    Settings::command()
        .get_arguments()
        .filter_map(|a| {
            let var = a.get_env()?.to_str()?.to_owned();
            let default = a
                .get_default_values()
                .first()
                .map(|d| d.to_string_lossy().into_owned());
            Some((var, default))
        })
        .collect()
}

#[test]
fn help_names_every_variable_and_no_value() {
    let declared = declared();
    assert!(declared.len() >= 35, "{declared:?}");
    let help = Settings::help_command().render_long_help().to_string();
    for (var, _) in &declared {
        assert!(help.contains(&format!("[env: {var}]")), "{var} in {help}");
    }
}

/// The first two columns of the README's settings table: each row's variables and the
/// backquoted defaults.
fn readme_rows() -> Vec<(Vec<String>, Vec<String>)> {
    let readme = include_str!("../../README.md");
    let section = readme
        .split("\n## Settings\n")
        .nth(1)
        .and_then(|s| s.split("\n## ").next())
        .unwrap_or_default();
    let ticked = |cell: &str| -> Vec<String> {
        cell.split('`')
            .skip(1)
            .step_by(2)
            .map(str::to_owned)
            .collect()
    };
    section
        .lines()
        .filter(|l| l.starts_with("| `"))
        .map(|l| {
            let cells: Vec<&str> = l.split('|').collect();
            (ticked(cells[1]), ticked(cells[2]))
        })
        .collect()
}

#[test]
fn readme_table_lists_exactly_the_declared_settings_and_defaults() {
    let declared: HashMap<String, Option<String>> = declared().into_iter().collect();
    let rows = readme_rows();
    let mut documented = Vec::new();
    for (vars, defaults) in &rows {
        for (i, var) in vars.iter().enumerate() {
            let Some(default) = declared.get(var) else {
                panic!("README lists {var}, which is not a setting");
            };
            // A row states one default per variable, or none ("none", "required", "unset").
            let readme_default = if defaults.len() == vars.len() {
                Some(defaults[i].clone())
            } else {
                assert!(defaults.is_empty(), "README row of {vars:?}: {defaults:?}");
                None
            };
            assert_eq!(&readme_default, default, "README default of {var}");
            documented.push(var.clone());
        }
    }
    let mut missing: Vec<_> = declared
        .keys()
        .filter(|v| !documented.contains(v))
        .collect();
    missing.sort();
    assert!(
        missing.is_empty(),
        "not in README's settings table: {missing:?}"
    );
}

#[test]
fn packaged_settings_file_lists_every_setting() {
    let file = include_str!("../../../packaging/agentidp-sidecar/sidecar.env");
    for (var, _) in declared() {
        assert!(
            file.lines()
                .any(|l| l.trim_start_matches('#').starts_with(&format!("{var}="))),
            "{var} not in packaging/agentidp-sidecar/sidecar.env"
        );
    }
}

#[test]
fn the_transparency_settings_parse_as_documented() {
    let c = Config::from_map(&vars(&[])).unwrap();
    assert_eq!(c.transparency.interval, Duration::from_secs(30));
    assert!(c.transparency.wait_for_standbys);
    assert!(!c.transparency.tlog_tiles);
    assert!(c.transparency.witnesses.is_empty());
    let c = Config::from_map(&vars(&[
        ("CHECKPOINT_INTERVAL_SECONDS", "1"),
        ("CHECKPOINT_WAIT_FOR_STANDBYS", "false"),
        ("TLOG_TILES_ENABLED", "true"),
        ("CHECKPOINT_DIRECTORY", "/var/lib/agentidp/checkpoints"),
    ]))
    .unwrap();
    assert_eq!(c.transparency.interval, Duration::from_secs(1));
    assert!(!c.transparency.wait_for_standbys);
    assert!(c.transparency.tlog_tiles);
    assert_eq!(
        c.transparency.directory.as_deref(),
        Some(std::path::Path::new("/var/lib/agentidp/checkpoints"))
    );
    assert_eq!(
        err(&[("TLOG_TILES_ENABLED", "maybe")]).var,
        "TLOG_TILES_ENABLED"
    );
    assert_eq!(
        err(&[("CHECKPOINT_INTERVAL_SECONDS", "0")]).var,
        "CHECKPOINT_INTERVAL_SECONDS"
    );
    assert_eq!(
        err(&[("CHECKPOINT_WITNESSES", "https://w.example/")]).var,
        "CHECKPOINT_WITNESSES"
    );
}
