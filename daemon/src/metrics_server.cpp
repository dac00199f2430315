// SPDX-License-Identifier: Apache-2.0
#include "metrics_server.h"

#include <boost/asio/co_spawn.hpp>
#include <boost/asio/detached.hpp>
#include <boost/asio/redirect_error.hpp>
#include <boost/asio/use_awaitable.hpp>
#include <boost/beast/core.hpp>
#include <boost/beast/http.hpp>
#include <charconv>
#include <chrono>

#include <spdlog/spdlog.h>

namespace sockaccel {

namespace asio = boost::asio;
namespace beast = boost::beast;
namespace http = beast::http;
using asio::awaitable;
using asio::use_awaitable;
using asio::ip::tcp;

namespace {

constexpr auto kRequestTimeout = std::chrono::seconds(10);
constexpr std::size_t kMaxRequestBytes = 8192;
constexpr int kMaxSessions = 16;
// The Prometheus text exposition format.
constexpr const char* kContentType = "text/plain; version=0.0.4; charset=utf-8";

}  // namespace

tl::expected<tcp::endpoint, std::string> parse_listen_address(const std::string& text) {
    std::string host, port;
    if (!text.empty() && text.front() == '[') {
        const auto close = text.find(']');
        if (close == std::string::npos || close + 1 >= text.size() || text[close + 1] != ':')
            return tl::unexpected(std::string("must be \"[IPv6]:PORT\""));
        host = text.substr(1, close - 1);
        port = text.substr(close + 2);
    } else {
        const auto colon = text.rfind(':');
        if (colon == std::string::npos || text.find(':') != colon)
            return tl::unexpected(std::string("must be \"HOST:PORT\" or \"[IPv6]:PORT\""));
        host = text.substr(0, colon);
        port = text.substr(colon + 1);
    }
    unsigned value = 0;
    auto [end, ec] = std::from_chars(port.data(), port.data() + port.size(), value);
    if (port.empty() || ec != std::errc() || end != port.data() + port.size() || value == 0 ||
        value > 65535)
        return tl::unexpected(std::string("the port must be 1-65535"));
    boost::system::error_code aec;
    auto address = asio::ip::make_address(host, aec);
    if (aec) return tl::unexpected("\"" + host + "\" is not a numeric IP address");
    return tcp::endpoint(address, static_cast<unsigned short>(value));
}

MetricsServer::MetricsServer(asio::io_context& io, tcp::endpoint endpoint,
                             std::function<std::string()> render)
    : io_(io), endpoint_(std::move(endpoint)), render_(std::move(render)), acceptor_(io) {}

Result<void> MetricsServer::listen() {
    boost::system::error_code ec;
    const std::string where = "metrics endpoint " + endpoint_.address().to_string() + ":" +
                              std::to_string(endpoint_.port());
    acceptor_.open(endpoint_.protocol(), ec);
    if (!ec) acceptor_.set_option(tcp::acceptor::reuse_address(true), ec);
    if (!ec) acceptor_.bind(endpoint_, ec);
    if (!ec) acceptor_.listen(asio::socket_base::max_listen_connections, ec);
    if (ec) return sys_error(ec.value(), "listen on " + where);
    endpoint_ = acceptor_.local_endpoint(ec);  // the real port when 0 was asked for
    return {};
}

void MetricsServer::start() { asio::co_spawn(io_, accept_loop(), asio::detached); }

void MetricsServer::stop() {
    boost::system::error_code ec;
    acceptor_.close(ec);
}

awaitable<void> MetricsServer::accept_loop() {
    for (;;) {
        boost::system::error_code ec;
        tcp::socket socket = co_await acceptor_.async_accept(asio::redirect_error(use_awaitable, ec));
        if (ec == asio::error::operation_aborted || !acceptor_.is_open()) co_return;
        if (ec) continue;  // a failed accept ends only that connection
        if (sessions_ >= kMaxSessions) continue;  // closed by going out of scope
        asio::co_spawn(io_, session(std::move(socket)), asio::detached);
    }
}

awaitable<void> MetricsServer::session(tcp::socket socket) {
    ++sessions_;
    struct Count {
        int& n;
        ~Count() { --n; }
    } count{sessions_};
    beast::tcp_stream stream(std::move(socket));
    beast::flat_buffer buffer(kMaxRequestBytes);
    http::request_parser<http::empty_body> parser;
    parser.header_limit(kMaxRequestBytes);
    parser.body_limit(0);
    boost::system::error_code ec;
    stream.expires_after(kRequestTimeout);
    co_await http::async_read(stream, buffer, parser, asio::redirect_error(use_awaitable, ec));
    if (ec) co_return;  // timeout, oversized or malformed request: just close
    const auto& req = parser.get();

    http::response<http::string_body> res;
    res.version(req.version());
    res.keep_alive(false);
    res.set(http::field::server, "sockacceld");
    if (req.method() != http::verb::get && req.method() != http::verb::head) {
        res.result(http::status::method_not_allowed);
        res.set(http::field::allow, "GET, HEAD");
        res.set(http::field::content_type, "text/plain");
        res.body() = "method not allowed\n";
    } else if (req.target() != "/metrics") {
        res.result(http::status::not_found);
        res.set(http::field::content_type, "text/plain");
        res.body() = "not found; metrics are at /metrics\n";
    } else {
        res.result(http::status::ok);
        res.set(http::field::content_type, kContentType);
        res.body() = render_();
    }
    res.prepare_payload();
    if (req.method() == http::verb::head) res.body().clear();  // headers keep the length
    stream.expires_after(kRequestTimeout);
    co_await http::async_write(stream, res, asio::redirect_error(use_awaitable, ec));
    stream.socket().shutdown(tcp::socket::shutdown_send, ec);
}

}  // namespace sockaccel
