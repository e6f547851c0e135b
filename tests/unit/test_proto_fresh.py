"""The generated protocol code under server/pyetcd/proto matches server/proto."""

from tools.genproto import stale_files


def test_generated_proto_code_is_fresh() -> None:
    assert stale_files() == [], "run `make proto` and commit the result"


def test_wire_numbers_match_etcd() -> None:
    # Spot checks of field numbers that real etcd clients depend on (reference §1.3).
    from pyetcd.proto.etcdserverpb import rpc_pb2
    from pyetcd.proto.mvccpb import kv_pb2

    fields = rpc_pb2.RangeRequest.DESCRIPTOR.fields_by_name
    assert fields["max_create_revision"].number == 13
    assert rpc_pb2.WatchResponse.DESCRIPTOR.fields_by_name["events"].number == 11
    assert rpc_pb2.Compare.DESCRIPTOR.fields_by_name["range_end"].number == 64
    assert kv_pb2.KeyValue.DESCRIPTOR.fields_by_name["lease"].number == 6
    assert rpc_pb2.DESCRIPTOR.services_by_name["KV"].full_name == "etcdserverpb.KV"
