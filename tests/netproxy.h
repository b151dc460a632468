/* netproxy: being written. */
#ifndef TWOPC_NETPROXY_H
#define TWOPC_NETPROXY_H
#endif
