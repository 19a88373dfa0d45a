use kafka_listener::{kafka_listener, AssignmentSeeker, RebalanceListener, SeekTarget, TopicPartition};

struct FromTheStart;

impl RebalanceListener for FromTheStart {
    fn on_partitions_assigned(&self, partitions: &[TopicPartition], seeker: &mut AssignmentSeeker) {
        seeker.seek_all(partitions, SeekTarget::Beginning);
    }
}

static FROM_THE_START: FromTheStart = FromTheStart;

#[kafka_listener(topic_pattern = "orders-.*", rebalance_listener = FROM_THE_START)]
async fn on_any_orders(value: String) {
    let _ = value;
}

#[kafka_listener(partitions = ["orders:0", "orders:1@100", "orders:2@earliest", "${P:orders:3}"])]
async fn on_some_partitions(value: String) {
    let _ = value;
}

fn main() {}
