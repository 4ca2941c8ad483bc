#!/usr/bin/perl
# notes-server: an HTTP service on 127.0.0.1:18109 for a non-root user.
# At start it writes /var/lib/fleet-notes/state.txt. GET / returns that file; GET /dir returns
# the mode and owner of /var/lib/fleet-notes and of the file, which the user must own.
use strict;
use warnings;

use File::stat;
use HTTP::Daemon;
use HTTP::Response;
use HTTP::Status qw(RC_NOT_FOUND);

my $dir = '/var/lib/fleet-notes';
my $state = "$dir/state.txt";
my $user = getpwuid($<) or die "notes-server: uid $< has no entry in /etc/passwd\n";

open(my $out, '>', $state) or die "notes-server: cannot write $state: $!\n";
print $out "state written by $user\n";
close($out) or die "notes-server: cannot close $state: $!\n";

sub describe {
    my ($path) = @_;
    my $info = stat($path) or return "$path: $!\n";
    return sprintf("%s mode %04o owner %s group %s\n", $path, $info->mode & 07777,
                   scalar getpwuid($info->uid), scalar getgrgid($info->gid));
}

$SIG{TERM} = sub { exit 0 };

my $daemon = HTTP::Daemon->new(LocalAddr => '127.0.0.1', LocalPort => 18109, ReuseAddr => 1)
    or die "notes-server: cannot listen on 127.0.0.1:18109: $!\n";
print STDERR "notes-server: listening on 127.0.0.1:18109 as $user\n";

while (my $connection = $daemon->accept) {
    while (my $request = $connection->get_request) {
        my $path = $request->uri->path;
        if ($path eq '/') {
            $connection->send_file_response($state);
        } elsif ($path eq '/dir') {
            my $response = HTTP::Response->new(200);
            $response->header('Content-Type' => 'text/plain');
            $response->content(describe($dir) . describe($state));
            $connection->send_response($response);
        } else {
            $connection->send_error(RC_NOT_FOUND);
        }
    }
    $connection->close;
}
