//! Two instances of the service on one database, as a deployment scaled out behind a load
//! balancer runs them. (Refreshing once across instances, a logout reaching the other instance
//! within a second, and a deletion through one instance reaching the other are tested with
//! their features, in `search.rs` and `auth.rs`.)

use std::time::Duration;

use notion_connect::entity::notion_connection;
use sea_orm::{EntityTrait, PaginatorTrait};

use crate::{
    helpers::{Backend, TestApp, on_both_databases, spawn_app_with},
    mock_notion::{MockNotion, TokenReply},
    notion_oauth::fragment_query,
};

on_both_databases!(
    a_flow_started_on_one_instance_completes_on_another,
    one_callback_sent_to_two_instances_at_once_connects_once,
);

async fn two_instances(backend: Backend, notion: &MockNotion) -> (TestApp, TestApp) {
    let first = spawn_app_with(backend, |vars| notion.configure(vars)).await;
    let database_url = first.database_url.clone();
    let second = spawn_app_with(backend, |vars| {
        notion.configure(vars);
        vars.insert("DATABASE_URL".into(), database_url);
    })
    .await;
    (first, second)
}

fn grant() -> TokenReply {
    TokenReply::Grant {
        bot_id: "bot-scaled".into(),
        access_token: "secret_scaled".into(),
    }
}

async fn a_flow_started_on_one_instance_completes_on_another(backend: Backend) {
    let notion = MockNotion::start(grant()).await;
    let (first, second) = two_instances(backend, &notion).await;
    let user = first.signed_in("roaming").await;

    let flow = first.start_flow(&user.access).await;
    let landed = second
        .callback(&format!("code=c&state={}", flow.state), Some(&flow.binding))
        .await;

    let id = fragment_query(&landed)
        .get("connected")
        .unwrap_or_else(|| panic!("not connected: {landed}"))
        .clone();
    let listed: serde_json::Value = first
        .get_as("/api/v1/connections", &user.access)
        .await
        .json()
        .await
        .unwrap();
    assert_eq!(listed["items"][0]["id"], id.as_str(), "{listed}");
    let searched = first
        .get_as(&format!("/api/v1/connections/{id}/search"), &user.access)
        .await;
    assert_eq!(searched.status(), 200);
}

async fn one_callback_sent_to_two_instances_at_once_connects_once(backend: Backend) {
    let notion = MockNotion::start(grant()).await;
    // A slow exchange keeps the window between claiming the state and storing the connection
    // wide open.
    notion.delay_exchanges(Duration::from_millis(300));
    let (first, second) = two_instances(backend, &notion).await;
    let user = first.signed_in("twice").await;
    let flow = first.start_flow(&user.access).await;
    let query = format!("code=the-code&state={}", flow.state);

    let attempts = (0..6).map(|i| {
        let app = if i % 2 == 0 { &first } else { &second };
        app.callback(&query, Some(&flow.binding))
    });
    let landed = futures_util::future::join_all(attempts).await;

    let connected = landed
        .iter()
        .filter(|url| fragment_query(url).contains_key("connected"))
        .count();
    assert_eq!(connected, 1, "{landed:?}");
    assert_eq!(notion.token_calls(), 1, "one code exchange");
    let stored = notion_connection::Entity::find()
        .count(&first.db)
        .await
        .unwrap();
    assert_eq!(stored, 1);
}
