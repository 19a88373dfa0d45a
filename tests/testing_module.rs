//! `kafka_listener::testing`, as a user testing their own handler would use it.

use std::time::Duration;

use kafka_listener::testing::TestApp;
use kafka_listener::{kafka_listener, BoxError, Json, NonRetryable};

#[derive(serde::Deserialize, serde::Serialize)]
struct Payment {
    id: String,
    amount_cents: i64,
}

#[kafka_listener(id = "tm_payments", topics = "tm-payments", dead_letter)]
async fn tm_payments(payment: Json<Payment>) -> Result<(), BoxError> {
    if payment.amount_cents < 0 {
        return Err(NonRetryable::new(format!("payment {}: negative amount", payment.id)).into());
    }
    Ok(())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_handler_is_tested_on_the_embedded_cluster() {
    let app = TestApp::builder(["tm_payments"])
        .start()
        .await
        .expect("the test application starts");
    for (id, amount) in [("p-1", 100), ("p-2", -5), ("p-3", 7)] {
        app.send_json(
            "tm-payments",
            id,
            &Payment {
                id: id.into(),
                amount_cents: amount,
            },
        )
        .await
        .expect("sent");
    }
    app.await_finished("tm_payments", 3, Duration::from_secs(30))
        .await
        .expect("three finished");
    let letters = app
        .records("tm-payments.DLT", 1, Duration::from_secs(30))
        .await
        .expect("read the dead-letter topic");
    assert_eq!(letters.len(), 1);
    assert_eq!(letters[0].key(), Some(&b"p-2"[..]));
    assert!(letters[0]
        .headers()
        .last_str("kafka_dlt-exception-message")
        .is_some_and(|m| m.contains("negative amount")));
    app.await_committed("tm_payments", Duration::from_secs(30))
        .await
        .expect("committed to the end");
    let report = app.shutdown().await;
    assert!(report.is_clean(), "{report}");
    // What the helpers report when something does not happen.
    let app = TestApp::builder(["tm_payments"])
        .start()
        .await
        .expect("starts again");
    let err = app
        .await_finished("tm_payments", 1, Duration::from_millis(300))
        .await
        .expect_err("nothing was sent");
    assert!(err.to_string().contains("not 1"), "{err}");
    app.shutdown().await;
}
