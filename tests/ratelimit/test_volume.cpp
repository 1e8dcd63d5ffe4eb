// The volume baseline and spike signal on a fake clock: folding finished
// buckets, zeros for skipped ones, one spike per bucket, holds and their
// clearing, no history, expiry and the per-slot (seasonal) baselines.
#include <doctest/doctest.h>

#include "gateway/ratelimit/volume.hpp"

using namespace relaygate::ratelimit;

namespace {

SpikeSettings settings() {
    SpikeSettings s;
    s.bucket_seconds = 10;
    s.slots = 4;
    s.alpha = 0.5;
    s.multiple = 3;
    s.min_messages = 2;
    return s;
}

// `k` messages at `now`; the last observation.
VolumeObservation send(VolumeState& st, const SpikeSettings& s, double now, int k) {
    VolumeObservation o;
    for (int i = 0; i < k; ++i)
        o = volume_observe(st, s, now);
    return o;
}

}  // namespace

TEST_CASE("no history: a baseline of -1 counts as 1 for the threshold") {
    const SpikeSettings s = settings();
    VolumeState st;
    VolumeObservation o = send(st, s, 0, 3);
    CHECK(o.baseline == -1);
    CHECK(o.volume == 3);
    CHECK_FALSE(o.spike);  // 3 is not > 3 * max(-1, 1)
    CHECK_FALSE(o.held);
    o = volume_observe(st, s, 1);
    CHECK(o.spike);
    CHECK(o.held);
    CHECK(o.volume == 4);
    // Once per bucket: the signal fired, the hold stays.
    o = volume_observe(st, s, 2);
    CHECK_FALSE(o.spike);
    CHECK(o.held);
    CHECK(o.volume == 5);
}

TEST_CASE("min_messages keeps small tenants quiet") {
    SpikeSettings s = settings();
    s.min_messages = 10;
    VolumeState st;
    VolumeObservation o = send(st, s, 0, 9);
    CHECK_FALSE(o.held);
    o = volume_observe(st, s, 0);
    CHECK(o.spike);
    CHECK(o.volume == 10);
}

TEST_CASE("finished buckets fold into their slot; skipped buckets fold zeros") {
    const SpikeSettings s = settings();
    VolumeState st;
    send(st, s, 0, 2);                                // bucket 0 (slot 0): 2 messages
    VolumeObservation o = volume_observe(st, s, 10);  // bucket 1 (slot 1)
    CHECK(o.baseline == -1);                          // slot 1 has no history
    CHECK(o.volume == 1);
    CHECK(st.baselines[0] == 2);  // the first history is the count itself
    send(st, s, 15, 3);           // bucket 1: 4 messages

    // Bucket 4 is slot 0 again; buckets 2 and 3 had no message.
    o = volume_observe(st, s, 40);
    CHECK(st.baselines[1] == 4);
    CHECK(st.baselines[2] == 0);
    CHECK(st.baselines[3] == 0);
    CHECK(o.baseline == 2);
    CHECK(o.volume == 1);

    // Bucket 5: slot 0 folds bucket 4's single message: 0.5*1 + 0.5*2.
    o = volume_observe(st, s, 50);
    CHECK(st.baselines[0] == doctest::Approx(1.5));
    CHECK(o.baseline == doctest::Approx(4));  // slot 1

    // Bucket 5 (slot 1) folds its one message; buckets 6, 7, 8 are empty
    // (slots 2, 3, 0 get a zero); 99.5 is just before the state expires.
    o = volume_observe(st, s, 99.5);  // bucket 9, slot 1
    CHECK(st.baselines[1] == doctest::Approx(0.5 * 1 + 0.5 * 4));
    CHECK(st.baselines[2] == 0);
    CHECK(st.baselines[3] == 0);
    CHECK(st.baselines[0] == doctest::Approx(0.75));  // 1.5 decayed by bucket 8
    CHECK(o.baseline == doctest::Approx(2.5));
}

TEST_CASE("a state unused for slots + 1 buckets expires; other settings reset it") {
    const SpikeSettings s = settings();
    VolumeState st;
    send(st, s, 0, 5);
    VolumeObservation o = volume_observe(st, s, 30);
    CHECK(st.baselines[0] == 5);
    o = volume_observe(st, s, 30 + 50);  // expires_at = 30 + (4 + 1) * 10
    CHECK(o.baseline == -1);
    CHECK(o.volume == 1);
    for (double b : st.baselines)
        CHECK(b == -1);

    send(st, s, 90, 3);  // bucket 9 (slot 1); bucket 10 folds its 3
    volume_observe(st, s, 100);
    REQUIRE(st.baselines[1] == 3);
    SpikeSettings other = s;
    other.slots = 24;
    o = volume_observe(st, other, 101);
    CHECK(o.baseline == -1);
    CHECK(st.baselines.size() == 24);
    CHECK(o.volume == 1);
}

TEST_CASE("a hold is cleared by an operator or by the next bucket") {
    const SpikeSettings s = settings();
    VolumeState st;
    CHECK_FALSE(volume_clear_hold(st));  // nothing held
    VolumeObservation o = send(st, s, 0, 4);
    REQUIRE(o.spike);
    REQUIRE(o.held);
    CHECK(volume_clear_hold(st));
    CHECK_FALSE(volume_clear_hold(st));  // already cleared
    o = send(st, s, 1, 20);
    CHECK_FALSE(o.spike);  // cleared: no second spike in this bucket
    CHECK_FALSE(o.held);
    CHECK(o.volume == 24);

    // The next bucket starts clean; its slot has no history: it fires again.
    o = send(st, s, 10, 4);
    CHECK(o.spike);
    CHECK(o.held);
    o = volume_observe(st, s, 20);  // and the hold passes with its bucket
    CHECK_FALSE(o.held);
    CHECK_FALSE(o.spike);
}

TEST_CASE("each slot keeps its own season") {
    // A tenant that sends 30 messages in slot 0 and 2 in the other slots,
    // for three cycles: 30 in slot 0 is normal, 30 in slot 1 is a spike.
    const SpikeSettings s = settings();
    VolumeState st;
    double t = 0;
    for (int cycle = 0; cycle < 3; ++cycle) {
        for (int slot = 0; slot < 4; ++slot, t += 10)
            send(st, s, t, slot == 0 ? 30 : 2);
    }
    VolumeObservation o = send(st, s, t, 30);  // slot 0
    CHECK(o.baseline == doctest::Approx(30));
    CHECK_FALSE(o.spike);
    CHECK_FALSE(o.held);
    o = send(st, s, t + 10, 6);  // slot 1: 6 is not > 3 * 2
    CHECK(o.baseline == doctest::Approx(2));
    CHECK_FALSE(o.held);
    o = volume_observe(st, s, t + 11);  // 7 > 6
    CHECK(o.spike);
    CHECK(o.volume == 7);
}

TEST_CASE("settings validation") {
    SpikeSettings s = settings();
    CHECK(volume_settings_valid(s));
    s.slots = 0;
    CHECK_FALSE(volume_settings_valid(s));
    s = settings();
    s.bucket_seconds = 0;
    CHECK_FALSE(volume_settings_valid(s));
    s = settings();
    s.alpha = 1.5;
    CHECK_FALSE(volume_settings_valid(s));
}
