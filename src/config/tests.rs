//! Parsing the command line and environment: names, secrets, defaults.

use super::*;
use clap::CommandFactory;

#[test]
fn cli_is_well_formed() {
    Cli::command().debug_assert();
}

#[test]
fn secrets_never_show_in_debug() {
    let cli = Cli::try_parse_from([
        "livefund",
        "serve",
        "--database-url",
        "postgres://u:hunter2@db/x",
        "--redis-url",
        "redis://:hunter3@r",
        "--livefund-webhook-secret",
        "whsec_one,whsec_two",
        "--operator-token",
        "op-token-xyz",
    ])
    .expect("parses");
    let shown = format!("{cli:?}");
    for secret in [
        "hunter2",
        "hunter3",
        "whsec_one",
        "whsec_two",
        "op-token-xyz",
    ] {
        assert!(!shown.contains(secret), "{secret} leaked in {shown}");
    }
}

#[test]
fn webhook_secrets_split_on_commas() {
    let s: WebhookSecrets = "a, b,,c".parse().expect("parses");
    let all: Vec<&str> = s.iter().map(Secret::expose).collect();
    assert_eq!(all, ["a", "b", "c"]);
    assert!(" , ".parse::<WebhookSecrets>().is_err());
}

#[test]
fn public_url_defaults_to_the_bound_address() {
    let settings = Settings {
        listen: "127.0.0.1:0".parse().expect("addr"),
        listen_backlog: 4096,
        public_url: None,
        operator_token: None,
        allowed_origins: vec!["https://a.example/ ".into(), "".into()],
        sandbox_payments: false,
        prefix: RedisPrefix {
            redis_prefix: "lf".into(),
        },
        checkout_url: None,
        limits: Limits::default(),
    };
    let secrets: WebhookSecrets = "s".parse().expect("secret");
    let config = settings.resolve("127.0.0.1:4000".parse().expect("addr"), secrets);
    assert_eq!(config.public_url, "http://127.0.0.1:4000");
    assert_eq!(
        config.allowed_origins,
        ["https://a.example", "http://127.0.0.1:4000"]
    );
}

#[test]
fn redis_prefix_is_restricted() {
    assert!(parse_redis_prefix("lf-test_1.a").is_ok());
    for bad in ["", "a b", "a:b", "a{b}", &"x".repeat(65)] {
        assert!(parse_redis_prefix(bad).is_err(), "{bad}");
    }
}

#[test]
fn required_settings_say_what_is_missing() {
    let backends = Backends {
        database: Database {
            database_url: Some(Secret::new("postgres://x")),
        },
        redis: Redis { redis_url: None },
    };
    let missing = backends.required().expect_err("no Redis");
    assert_eq!(
        missing.to_string(),
        "REDIS_URL is required: set it, or pass --redis-url"
    );
    let none = WebhookSecret {
        webhook_secret: None,
    };
    assert!(none.required().is_err());
}
