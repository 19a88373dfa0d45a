//! A listener returns `()` or `Result<(), E>` with `E: Into<BoxError>`.

use kafka_listener::{kafka_listener, BoxError};

#[kafka_listener(topics = "t")]
async fn unit(value: String) {
    let _ = value;
}

#[kafka_listener(topics = "t")]
async fn explicit_unit(value: String) -> () {
    let _ = value;
}

#[kafka_listener(topics = "t")]
async fn box_error(value: String) -> Result<(), BoxError> {
    let _: u32 = value.parse()?;
    Ok(())
}

#[kafka_listener(topics = "t")]
async fn io_error(value: String) -> Result<(), std::io::Error> {
    let _ = value;
    Err(std::io::Error::other("always fails"))
}

#[kafka_listener(topics = "t")]
async fn string_error(value: String) -> Result<(), String> {
    Err(value)
}

fn main() {}
