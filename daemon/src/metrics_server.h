// SPDX-License-Identifier: Apache-2.0
//
// MetricsServer: an HTTP/1.1 endpoint for Prometheus (Boost.Beast), off by
// default and enabled by metrics.listen ("127.0.0.1:9477", "[::1]:9477").
// GET (or HEAD) /metrics answers 200 with render() in the text exposition
// format; any other path is 404, any other method 405.
//
// Robustness contract: a request must arrive within 10 s and fit 8 KiB; at
// most 16 connections at once (further ones are closed on accept); one
// request per connection (Connection: close). Input never stops the daemon:
// every failure ends only that connection.
//
// Threading: everything runs on the daemon's io_context; render() is called
// there. Errors: listen() returns a Result; nothing is thrown out of a
// session.
#pragma once

#include <utility>  // must precede awaitable.hpp with Boost 1.74 on g++ 12

#include <boost/asio/awaitable.hpp>
#include <boost/asio/io_context.hpp>
#include <boost/asio/ip/tcp.hpp>
#include <functional>
#include <string>

#include "error.h"

namespace sockaccel {

// "HOST:PORT" with a numeric IPv4 host, or "[IPv6]:PORT"; port 1-65535.
// The error says what is wrong.
tl::expected<boost::asio::ip::tcp::endpoint, std::string> parse_listen_address(
    const std::string& text);

class MetricsServer {
public:
    MetricsServer(boost::asio::io_context& io, boost::asio::ip::tcp::endpoint endpoint,
                  std::function<std::string()> render);
    // Binds and listens (SO_REUSEADDR); call once.
    [[nodiscard]] Result<void> listen();
    // Starts accepting on the io_context.
    void start();
    // Stops accepting; open connections finish or time out.
    void stop();
    const boost::asio::ip::tcp::endpoint& endpoint() const { return endpoint_; }

private:
    boost::asio::awaitable<void> accept_loop();
    boost::asio::awaitable<void> session(boost::asio::ip::tcp::socket socket);

    boost::asio::io_context& io_;
    boost::asio::ip::tcp::endpoint endpoint_;
    std::function<std::string()> render_;
    boost::asio::ip::tcp::acceptor acceptor_;
    int sessions_ = 0;
};

}  // namespace sockaccel
