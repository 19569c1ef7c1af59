use base64::{Engine, engine::general_purpose::STANDARD};
use std::sync::Arc;

use notion_connect::{
    crypto::{Binding, KeyRing, SealedField, TokenCipher},
    entity::notion_connection,
    notion::vault::ConnectionVault,
};
use sea_orm::{EntityTrait, QueryOrder};

use notion_connect::{config::Settings, startup::Application};

use crate::helpers::{Backend, TEST_KEYS, TestApp, on_both_databases, spawn_app, test_variables};

on_both_databases!(
    rotation_interrupted_half_way_and_restarted_keeps_every_token_readable,
    the_rotate_keys_command_is_idempotent,
    a_damaged_row_is_skipped_and_the_rotation_finishes,
    production_refuses_to_start_with_a_key_ring_that_opens_no_stored_connection,
);

fn new_ring() -> String {
    format!("new:{},{TEST_KEYS}", STANDARD.encode([42u8; 32]))
}

/// Every secret of every row, opened with `cipher`.
async fn open_all(
    app: &TestApp,
    cipher: &TokenCipher,
) -> Vec<(String, Option<String>, Option<String>)> {
    let rows = notion_connection::Entity::find()
        .order_by_asc(notion_connection::Column::Id)
        .all(&app.db)
        .await
        .unwrap();
    rows.iter()
        .map(|row| {
            let bind = |field| Binding::new(row.user_id, &row.bot_id, field);
            let open = |sealed: &str, column| {
                cipher
                    .decrypt(sealed, bind(column))
                    .unwrap()
                    .expose()
                    .clone()
            };
            (
                open(&row.access_token, SealedField::AccessToken),
                row.refresh_token
                    .as_deref()
                    .map(|s| open(s, SealedField::RefreshToken)),
                row.owner_email
                    .as_deref()
                    .map(|s| open(s, SealedField::OwnerEmail)),
            )
        })
        .collect()
}

async fn connect_three(app: &TestApp) {
    for name in ["rot-a", "rot-b", "rot-c"] {
        let user = app.signed_in(name).await;
        app.connect_sandbox(&user.access).await;
    }
}

async fn rotation_interrupted_half_way_and_restarted_keeps_every_token_readable(backend: Backend) {
    let app = spawn_app(backend).await;
    connect_three(&app).await;
    let original = TokenCipher::new(KeyRing::parse(TEST_KEYS).unwrap());
    let before = open_all(&app, &original).await;

    let rotating = Arc::new(TokenCipher::new(KeyRing::parse(&new_ring()).unwrap()));
    let store = ConnectionVault::new(app.db.clone(), rotating.clone());
    // Stopped after one batch of one row, as if the process had been killed.
    assert_eq!(
        store
            .reseal_with_primary_key(1, Some(1))
            .await
            .unwrap()
            .rewritten,
        1
    );
    let rows = notion_connection::Entity::find()
        .all(&app.db)
        .await
        .unwrap();
    assert_eq!(rows.iter().filter(|r| r.key_id == "new").count(), 1);
    // Mixed rows still open with the full ring.
    assert_eq!(open_all(&app, &rotating).await, before);

    assert_eq!(
        store
            .reseal_with_primary_key(1, None)
            .await
            .unwrap()
            .rewritten,
        2
    );
    assert_eq!(
        store
            .reseal_with_primary_key(1, None)
            .await
            .unwrap()
            .rewritten,
        0
    );

    let only_new =
        TokenCipher::new(KeyRing::parse(&format!("new:{}", STANDARD.encode([42u8; 32]))).unwrap());
    assert_eq!(
        open_all(&app, &only_new).await,
        before,
        "the old key is no longer needed"
    );
    let rows = notion_connection::Entity::find()
        .all(&app.db)
        .await
        .unwrap();
    assert!(rows.iter().all(|r| r.key_id == "new"));
    for row in rows {
        assert_eq!(TokenCipher::key_id_of(&row.access_token).unwrap(), "new");
    }
}

async fn the_rotate_keys_command_is_idempotent(backend: Backend) {
    let app = spawn_app(backend).await;
    connect_three(&app).await;
    let run = || {
        crate::cli::run_with_database(
            &app,
            &["rotate-keys"],
            &[("TOKEN_ENCRYPTION_KEYS", &new_ring())],
        )
    };

    let first = run();
    assert!(
        first.status.success(),
        "{}",
        String::from_utf8_lossy(&first.stderr)
    );
    assert!(
        String::from_utf8_lossy(&first.stdout)
            .contains("re-encrypted 3 connection(s) with key 'new'")
    );
    let second = run();
    assert!(String::from_utf8_lossy(&second.stdout).contains("re-encrypted 0 connection(s)"));

    let rotated = TokenCipher::new(KeyRing::parse(&new_ring()).unwrap());
    assert_eq!(open_all(&app, &rotated).await.len(), 3);
    let missing_key = crate::cli::run_with_database(
        &app,
        &["rotate-keys"],
        &[(
            "TOKEN_ENCRYPTION_KEYS",
            &format!("other:{}", STANDARD.encode([7u8; 32])),
        )],
    );
    assert!(
        !missing_key.status.success(),
        "rows sealed with an unknown key are an error"
    );
}

async fn a_damaged_row_is_skipped_and_the_rotation_finishes(backend: Backend) {
    use sea_orm::{ActiveModelTrait, Set};

    let app = spawn_app(backend).await;
    connect_three(&app).await;
    let rows = notion_connection::Entity::find()
        .order_by_asc(notion_connection::Column::Id)
        .all(&app.db)
        .await
        .unwrap();
    // The middle row's access token was altered: it no longer authenticates under its key.
    let mut envelope = STANDARD.decode(&rows[1].access_token).unwrap();
    *envelope.last_mut().unwrap() ^= 1;
    let mut damaged: notion_connection::ActiveModel = rows[1].clone().into();
    damaged.access_token = Set(STANDARD.encode(envelope));
    damaged.update(&app.db).await.unwrap();

    let rotating = Arc::new(TokenCipher::new(KeyRing::parse(&new_ring()).unwrap()));
    let store = ConnectionVault::new(app.db.clone(), rotating);
    let done = store.reseal_with_primary_key(1, None).await.unwrap();
    assert_eq!((done.rewritten, done.unreadable), (2, 1));
    let after = notion_connection::Entity::find()
        .order_by_asc(notion_connection::Column::Id)
        .all(&app.db)
        .await
        .unwrap();
    let keys: Vec<&str> = after.iter().map(|r| r.key_id.as_str()).collect();
    assert_eq!(
        keys,
        ["new", "test1", "new"],
        "the damaged row is left as it was"
    );
}

/// Starts (builds) the application on `app`'s database with `keys` as the key ring.
async fn start_with_keys(
    app: &TestApp,
    env: &str,
    keys: &str,
) -> Result<Application, notion_connect::startup::StartupError> {
    let mut vars = test_variables(app.dir.path());
    for (name, value) in [
        ("APP_ENV", env),
        ("PUBLIC_URL", "https://connect.example.com"),
        ("DATABASE_URL", app.database_url.as_str()),
        ("TOKEN_ENCRYPTION_KEYS", keys),
        ("NOTION_CLIENT_ID", "client-id"),
        ("NOTION_CLIENT_SECRET", "client-secret"),
    ] {
        vars.insert(name.to_owned(), value.to_owned());
    }
    let settings = Settings::from_source(|name| vars.get(name).cloned()).unwrap();
    Application::build(settings).await
}

async fn production_refuses_to_start_with_a_key_ring_that_opens_no_stored_connection(
    backend: Backend,
) {
    let app = spawn_app(backend).await;
    let stranger = format!("other:{}", STANDARD.encode([7u8; 32]));
    // Nothing stored yet: any ring will do.
    assert!(start_with_keys(&app, "production", &stranger).await.is_ok());

    connect_three(&app).await;
    let refused = start_with_keys(&app, "production", &stranger).await;
    let message = refused.err().expect("refused").to_string();
    assert!(
        message.starts_with("TOKEN_ENCRYPTION_KEYS opens none"),
        "{message}"
    );
    assert!(message.contains("key id test1"), "{message}");
    assert!(
        !message.contains(&STANDARD.encode([7u8; 32])),
        "no key in it"
    );

    // Development starts anyway (and says so loudly); so does production once the ring holds
    // the key the connections were sealed with.
    assert!(
        start_with_keys(&app, "development", &stranger)
            .await
            .is_ok()
    );
    let both = format!("{stranger},{TEST_KEYS}");
    assert!(start_with_keys(&app, "production", &both).await.is_ok());
}
