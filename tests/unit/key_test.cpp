// SPDX-License-Identifier: Apache-2.0
// Key building (bpf/include/sockaccel/key.h): the same inline code the BPF
// programs run, fed with values in the kernel's context encodings.
#include <arpa/inet.h>

#include <catch2/catch.hpp>
#include <cstring>

#include "sockaccel/key.h"

namespace {

// remote_port as struct bpf_sock_ops / sk_msg_md present it on a
// little-endian host: the network-order port in the upper 16 bits.
__u32 ctx_remote_port(std::uint16_t port) { return static_cast<__u32>(htons(port)) << 16; }

__u32 ip4(const char* s) {
    in_addr a{};
    REQUIRE(inet_pton(AF_INET, s, &a) == 1);
    return a.s_addr;
}

void ip6(const char* s, __u32 out[4]) {
    in6_addr a{};
    REQUIRE(inet_pton(AF_INET6, s, &a) == 1);
    std::memcpy(out, &a, 16);
}

sockaccel_key build(const sockaccel_sock_fields& f, __u64 netns = 0x1234) {
    sockaccel_key k;
    std::memset(&k, 0xAB, sizeof(k));  // prove the caller-zeroing contract matters below
    std::memset(&k, 0, sizeof(k));
    REQUIRE(sockaccel_key_from_fields(&k, &f, netns) == 0);
    return k;
}

}  // namespace

TEST_CASE("IPv4 key: addresses in network order, ports in host order") {
    sockaccel_sock_fields f{};
    f.family = AF_INET;
    f.local_ip4 = ip4("10.1.2.3");
    f.remote_ip4 = ip4("10.4.5.6");
    f.local_port = 8080;
    f.remote_port = ctx_remote_port(40000);
    auto k = build(f);
    CHECK(k.family == AF_INET);
    CHECK(k.local_ip[0] == ip4("10.1.2.3"));
    CHECK(k.remote_ip[0] == ip4("10.4.5.6"));
    CHECK(k.local_ip[1] == 0);
    CHECK(k.local_ip[3] == 0);
    CHECK(k.remote_ip[2] == 0);
    CHECK(k.local_port == 8080);
    CHECK(k.remote_port == 40000);
    CHECK(k.pad == 0);
    CHECK(k.netns == 0);  // not loopback: the peer may live in another netns
}

TEST_CASE("loopback keys carry the netns cookie") {
    sockaccel_sock_fields f{};
    f.family = AF_INET;
    f.local_ip4 = ip4("127.0.0.1");
    f.remote_ip4 = ip4("127.0.0.1");
    CHECK(build(f, 77).netns == 77);
    f.local_ip4 = ip4("127.8.9.10");  // all of 127/8
    f.remote_ip4 = ip4("10.0.0.1");
    CHECK(build(f, 77).netns == 77);

    sockaccel_sock_fields g{};
    g.family = AF_INET6;
    ip6("::1", g.local_ip6);
    ip6("::1", g.remote_ip6);
    CHECK(build(g, 99).netns == 99);
    ip6("fd00::1", g.local_ip6);
    ip6("fd00::2", g.remote_ip6);
    CHECK(build(g, 99).netns == 0);
}

TEST_CASE("IPv6 key keeps all four words") {
    sockaccel_sock_fields f{};
    f.family = AF_INET6;
    ip6("fd00::1:2", f.local_ip6);
    ip6("fd00::3:4", f.remote_ip6);
    f.local_port = 443;
    f.remote_port = ctx_remote_port(51000);
    auto k = build(f);
    CHECK(k.family == AF_INET6);
    CHECK(std::memcmp(k.local_ip, f.local_ip6, 16) == 0);
    CHECK(std::memcmp(k.remote_ip, f.remote_ip6, 16) == 0);
    CHECK(k.local_port == 443);
    CHECK(k.remote_port == 51000);
}

TEST_CASE("IPv4-mapped IPv6 is keyed as IPv4 so it matches an IPv4-only peer") {
    sockaccel_sock_fields dual{};
    dual.family = AF_INET6;
    ip6("::ffff:127.0.0.1", dual.local_ip6);
    ip6("::ffff:127.0.0.1", dual.remote_ip6);
    dual.local_port = 5000;
    dual.remote_port = ctx_remote_port(6000);

    sockaccel_sock_fields v4{};
    v4.family = AF_INET;
    v4.local_ip4 = ip4("127.0.0.1");
    v4.remote_ip4 = ip4("127.0.0.1");
    v4.local_port = 6000;
    v4.remote_port = ctx_remote_port(5000);

    auto a = build(dual, 5);
    auto b = build(v4, 5);
    CHECK(a.family == AF_INET);
    sockaccel_key peer_of_a;
    std::memset(&peer_of_a, 0, sizeof(peer_of_a));
    sockaccel_key_peer(&peer_of_a, &a);
    CHECK(std::memcmp(&peer_of_a, &b, sizeof(b)) == 0);

    // Only one side mapped (e.g. ::ffff:x to a real v6 address) stays IPv6.
    ip6("fd00::9", dual.remote_ip6);
    CHECK(build(dual).family == AF_INET6);
}

TEST_CASE("the peer key of the peer key is the key") {
    sockaccel_sock_fields f{};
    f.family = AF_INET6;
    ip6("fd00::a", f.local_ip6);
    ip6("fd00::b", f.remote_ip6);
    f.local_port = 1;
    f.remote_port = ctx_remote_port(65535);
    auto k = build(f);
    sockaccel_key p, pp;
    std::memset(&p, 0, sizeof(p));
    std::memset(&pp, 0, sizeof(pp));
    sockaccel_key_peer(&p, &k);
    CHECK(p.local_port == 65535);
    CHECK(p.remote_port == 1);
    sockaccel_key_peer(&pp, &p);
    CHECK(std::memcmp(&pp, &k, sizeof(k)) == 0);
}

TEST_CASE("unsupported families are refused") {
    sockaccel_sock_fields f{};
    f.family = 1;  // AF_UNIX
    sockaccel_key k{};
    CHECK(sockaccel_key_from_fields(&k, &f, 0) == -1);
}
