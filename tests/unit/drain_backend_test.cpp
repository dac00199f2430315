// SPDX-License-Identifier: Apache-2.0
//
// Which drain backend a start tries (daemon/src/drain_backend.h): the order,
// a forced choice, and the one line a start fails with when the kernel
// allows none, or not the forced one. Loading them for real runs in
// tests/priv/features_test.cpp.
#include <catch2/catch.hpp>

#include "config.h"
#include "drain_backend.h"

using namespace sockaccel;

namespace {

KernelFeatures iterators(bool sockmap, bool task_file, bool tcp) {
    KernelFeatures f;
    f.sockmap_iterator = sockmap;
    f.task_file_iterator = task_file;
    f.tcp_iterator = tcp;
    return f;
}

}  // namespace

TEST_CASE("drain backends: every allowed one, best first") {
    using B = DrainBackend;
    CHECK(*drain_candidates(iterators(true, true, true), std::nullopt) ==
          std::vector<B>{B::sockhash, B::task_file, B::tcp});
    // This project's 6.18 machines: the security policy refuses iter/sockmap.
    CHECK(*drain_candidates(iterators(false, true, true), std::nullopt) ==
          std::vector<B>{B::task_file, B::tcp});
    CHECK(*drain_candidates(iterators(false, false, true), std::nullopt) == std::vector<B>{B::tcp});
}

TEST_CASE("drain backends: a forced one alone, or one line if the kernel refuses it") {
    auto forced = drain_candidates(iterators(true, true, true), DrainBackend::tcp);
    REQUIRE(forced);
    CHECK(*forced == std::vector<DrainBackend>{DrainBackend::tcp});

    auto refused = drain_candidates(iterators(false, true, true), DrainBackend::sockhash);
    REQUIRE_FALSE(refused);
    CHECK(refused.error() ==
          "drain.backend \"sockhash\": this kernel refuses iter/sockmap programs; use \"auto\" "
          "to take the first backend it allows");
}

TEST_CASE("drain backends: a kernel that loads no iterator is refused in one line") {
    auto none = drain_candidates(iterators(false, false, false), std::nullopt);
    REQUIRE_FALSE(none);
    CHECK(none.error().find("loads none of the BPF iterators") != std::string::npos);
    CHECK(none.error().find("cannot run here") != std::string::npos);
    CHECK(none.error().find('\n') == std::string::npos);
}

TEST_CASE("drain backends: what each walk cannot see") {
    CHECK(drain_walk(DrainBackend::sockhash).complete);
    CHECK(drain_walk(DrainBackend::sockhash).cannot_see.empty());
    CHECK_FALSE(drain_walk(DrainBackend::task_file).complete);
    CHECK(drain_walk(DrainBackend::task_file).cannot_see.find("io_uring") != std::string::npos);
    CHECK_FALSE(drain_walk(DrainBackend::tcp).complete);
    CHECK(drain_walk(DrainBackend::tcp).cannot_see.find("network namespaces") !=
          std::string::npos);
    for (auto b : kDrainBackends) {
        INFO(to_string(b));
        CHECK(parse_drain_backend(to_string(b)) == b);
        CHECK(iterator_name(b).rfind("iter/", 0) == 0);
    }
    CHECK_FALSE(parse_drain_backend("auto"));
    CHECK_FALSE(parse_drain_backend("sockmap"));
}

TEST_CASE("drain.backend in the config: auto by default, names checked") {
    auto def = parse_config("{}", "t.json");
    REQUIRE(def);
    CHECK_FALSE(def->drain.backend);
    CHECK(config_to_json(*def)["drain"]["backend"] == "auto");

    auto tcp = parse_config(R"({"drain": {"backend": "tcp"}})", "t.json");
    REQUIRE(tcp);
    CHECK(tcp->drain.backend == DrainBackend::tcp);
    CHECK(config_to_json(*tcp)["drain"]["backend"] == "tcp");
    CHECK_FALSE(parse_config(R"({"drain": {"backend": "auto"}})", "t.json")->drain.backend);

    for (const char* bad : {R"({"drain": {"backend": "sockmap"}})", R"({"drain": {"backend": 1}})",
                            R"({"drain": {"backend": ""}})"}) {
        INFO(bad);
        auto r = parse_config(bad, "t.json");
        REQUIRE_FALSE(r);
        CHECK(r.error().find("drain.backend") != std::string::npos);
    }

    Config c = *tcp;
    ConfigOverrides o;
    o.drain_backend = std::optional<DrainBackend>();  // --drain-backend auto
    apply_overrides(c, o);
    CHECK_FALSE(c.drain.backend);
}
