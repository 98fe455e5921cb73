//! The protocol decoder: whatever bytes a client sends, the frame guard either refuses
//! them with an error or passes whole messages that pgwire's decoder reads without
//! panicking. `cargo fuzz run protocol` (see docs/security.md).

#![no_main]

use bytes::BytesMut;
use libfuzzer_sys::fuzz_target;
use pgwire::messages::{DecodeContext, PgWireFrontendMessage, ProtocolVersion};

fuzz_target!(|data: &[u8]| {
    let (frames, _refused) = sabot::server::frames::split_frames(data, 1 << 20);
    for (i, frame) in frames.iter().enumerate() {
        // A new connection decodes with pgwire's default version, as the server does.
        let mut context = DecodeContext::new(ProtocolVersion::default());
        context.awaiting_frontend_ssl = false;
        context.awaiting_frontend_startup = i == 0;
        let mut buffer = BytesMut::from(*frame);
        let decoded = PgWireFrontendMessage::decode(&mut buffer, &context);
        // A passed message is decoded whole: nothing of it is left, nothing is missing.
        if let Ok(Some(_)) = decoded {
            assert!(buffer.is_empty(), "the decoder left {} bytes of a checked message", buffer.len());
        }
        if let Ok(Some(PgWireFrontendMessage::PasswordMessageFamily(message))) = decoded {
            // The first password message is read as a SASL initial response.
            if i == 1 {
                let _ = message.into_sasl_initial_response();
            }
        }
    }
});
